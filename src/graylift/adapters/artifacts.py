"""Artifact repositories: where a package version lives and the sha256 every host must verify.

``HttpArtifactStore`` fits Nexus / Artifactory "raw" repositories and any static file server: a URL
template for the package and one for its ``.sha256``. ``LocalDirArtifactStore`` takes packages from a
directory on the controller (the controller uploads them to the hosts).
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import httpx

from graylift.core.model import Package, PackageKind, is_plain_name
from graylift.errors import ArtifactError

SHA256 = re.compile(r"^[0-9a-f]{64}$")


def check_version(app: str, version: str) -> None:
    if not is_plain_name(version):
        raise ArtifactError(
            f"version {version!r} of {app} is not a plain name (letters, digits, '.', '_', '+', '-'); "
            "graylift uses it as a directory name on the hosts"
        )


def filename_for(app: str, version: str, kind: PackageKind) -> str:
    return f"{app}-{version}.{kind.value}"


def _fill(template: str, app: str, version: str, kind: PackageKind, url: str = "") -> str:
    return (template.replace("{app}", app).replace("{version}", version).replace("{ext}", kind.value)
            .replace("{url}", url))


class HttpArtifactStore:
    def __init__(self, *, url_template: str, kind: PackageKind, sha256_url_template: str | None = "{url}.sha256",
                 sha256: str | None = None, timeout: float = 30.0) -> None:
        self.url_template, self.kind = url_template, kind
        self.sha256_url_template, self.fixed_sha256, self.timeout = sha256_url_template, sha256, timeout

    async def resolve(self, app: str, version: str) -> Package:
        check_version(app, version)
        url = _fill(self.url_template, app, version, self.kind)
        async with httpx.AsyncClient(timeout=self.timeout) as client:
            try:
                head = await client.head(url)
                if head.status_code == 404:
                    raise ArtifactError(f"{app} {version} not found in the repository: {url} answered 404")
                if head.status_code >= 400:
                    raise ArtifactError(f"{app} {version}: {url} answered HTTP {head.status_code}")
                sha = self.fixed_sha256
                if sha is None and self.sha256_url_template:
                    sha_url = _fill(self.sha256_url_template, app, version, self.kind, url)
                    resp = await client.get(sha_url)
                    if resp.status_code != 200:
                        raise ArtifactError(
                            f"{app} {version}: no sha256 at {sha_url} (HTTP {resp.status_code}); "
                            "publish the .sha256 next to the package or set package.sha256"
                        )
                    sha = (resp.text.split() or [""])[0].lower()
            except httpx.HTTPError as exc:
                raise ArtifactError(f"artifact repository unreachable for {url}: {exc}") from exc
        if sha is None or not SHA256.match(sha):
            raise ArtifactError(f"{app} {version}: sha256 {sha!r} is not 64 hex digits")
        return Package(app, version, self.kind, filename_for(app, version, self.kind), sha, url=url)


class LocalDirArtifactStore:
    def __init__(self, *, directory: Path, kind: PackageKind) -> None:
        self.directory, self.kind = directory, kind

    async def resolve(self, app: str, version: str) -> Package:
        check_version(app, version)
        name = filename_for(app, version, self.kind)
        path = self.directory / name
        if not path.is_file():
            raise ArtifactError(f"{app} {version} not found: no file {path}")
        digest = hashlib.sha256()
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
        return Package(app, version, self.kind, name, digest.hexdigest(), local_path=str(path))
