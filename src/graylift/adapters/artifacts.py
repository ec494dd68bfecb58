"""Artifact repositories: where a package version lives and the sha256 every host must verify.

``HttpArtifactStore`` fits Nexus / Artifactory "raw" repositories and any static file server: a URL
template for the package and one for its ``.sha256``. ``LocalDirArtifactStore`` takes packages from a
directory on the controller (the controller uploads them to the hosts).

Credentials (``ArtifactAuth``: HTTP basic, or a bearer token) never travel in a URL or a command line.
The controller sends them with its own requests (the existence check, the sha256 fetch); a host gets
them on the standard input of its download command (:func:`download_command`: ``curl --config -``).
Every error is one ``ArtifactError`` line with URLs masked (:func:`graylift.redact.mask_url`) and the
secret redacted; httpx's own errors are translated by :func:`graylift.adapters._http.translated`:

    ArtifactError
      "<app> <version> is not in the repository (<url>): HTTP 404; check the version"
      "... refused access (<url>): HTTP 401 ..."   (no credentials configured, or wrong ones)
      "... answered HTTP <status> ..." / "... no sha256 at ..."
      "<app> <version>: HEAD <path> failed: ConnectError ...; is the artifact repository reachable at <url>? ..."
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import shlex
from collections.abc import Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from graylift.adapters._http import safe_url, translated
from graylift.adapters.registry import secret
from graylift.core.model import Package, PackageKind, is_plain_name
from graylift.core.template import render
from graylift.deadline import bounded
from graylift.errors import ArtifactError, ConfigError
from graylift.redact import mask_url, redact

if TYPE_CHECKING:
    from graylift.config import PackageConfig, ResolvedPackage

SHA256 = re.compile(r"^[0-9a-f]{64}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class ArtifactAuth:
    """Resolved repository credentials: ``username`` + ``password`` (HTTP basic) or ``token`` (bearer).

    Holds the secret itself (read from the environment when the adapters are built, never stored);
    ``repr`` and ``str`` show the scheme and the username only. Build it with :meth:`basic` or
    :meth:`bearer`; a value a header or a curl config line could not carry is refused (ValueError,
    without the value).
    """

    username: str | None = None
    password: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        basic = self.username is not None or self.password is not None
        if basic == (self.token is not None):
            raise ValueError("repository credentials are username + password or a token, exactly one of them")
        if basic and not (self.username and self.password):
            raise ValueError("basic auth needs a non-empty username and password")
        if self.token is not None and not self.token:
            raise ValueError("the bearer token is empty")
        if self.username is not None and ":" in self.username:
            raise ValueError("the username cannot contain ':' (HTTP basic auth separates it from the password)")
        for name, value in (("username", self.username), ("password", self.password), ("token", self.token)):
            if value is not None and _CONTROL.search(value):
                raise ValueError(f"the repository {name} contains a line break or control character")

    @classmethod
    def basic(cls, username: str, password: str) -> ArtifactAuth:
        return cls(username=username, password=password)

    @classmethod
    def bearer(cls, token: str) -> ArtifactAuth:
        return cls(token=token)

    @property
    def scheme(self) -> str:
        return "bearer" if self.token is not None else "basic"

    @property
    def secrets(self) -> tuple[str, ...]:
        """The values to redact from any text that may have met them."""
        return tuple(s for s in (self.password, self.token) if s)

    def httpx_auth(self) -> httpx.Auth:
        if self.token is not None:
            return _Bearer(self.token)
        return httpx.BasicAuth(self.username or "", self.password or "")

    def curl_config(self) -> str:
        """The lines ``curl --config -`` reads from stdin: ``user = "..."`` or an Authorization header."""
        if self.token is not None:
            return f'header = "{_curl_quote("Authorization: Bearer " + self.token)}"\n'
        return f'user = "{_curl_quote(f"{self.username}:{self.password}")}"\n'

    def __repr__(self) -> str:
        if self.token is not None:
            return "ArtifactAuth(bearer, token=***)"
        return f"ArtifactAuth(basic, username={self.username!r}, password=***)"

    __str__ = __repr__


class _Bearer(httpx.Auth):
    def __init__(self, token: str) -> None:
        self._header = f"Bearer {token}"

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = self._header
        yield request


def _curl_quote(value: str) -> str:
    """Escape for a double-quoted curl config value (``\\`` and ``"``; control characters are refused)."""
    return value.replace("\\", "\\\\").replace('"', '\\"')


def download_command(url: str, dest: str, auth: ArtifactAuth | None) -> tuple[str, str | None]:
    """The shell command a host runs to download ``url`` to ``dest``, and the stdin to give it.

    With ``auth``: ``curl --config -`` reads the credentials from stdin, so the command (its argv, the
    journal, an error message) never holds the secret; curl is then required on the host. Without:
    curl, or wget when there is no curl, and no stdin. Arguments are shell-quoted.

    >>> download_command("http://repo/a b.tar.gz", "/srv/a/x.tar.gz", None)[1] is None
    True
    >>> cmd, stdin = download_command("http://repo/a.jar", "/tmp/a.jar", ArtifactAuth.bearer("t0k"))
    >>> "t0k" in cmd, stdin
    (False, 'header = "Authorization: Bearer t0k"\\n')
    """
    q = shlex.quote
    if auth is None:
        return (f"if command -v curl >/dev/null; then curl -fsSL --retry 2 -o {q(dest)} {q(url)}; "
                f"else wget -q -O {q(dest)} {q(url)}; fi"), None
    return ("command -v curl >/dev/null || { echo 'curl is needed on the host to download with credentials' >&2; "
            f"exit 127; }}; curl -fsSL --retry 2 --config - -o {q(dest)} {q(url)}"), auth.curl_config()


def check_version(app: str, version: str) -> None:
    if not is_plain_name(version):
        raise ArtifactError(
            f"version {version!r} of {app} is not a plain name (letters, digits, '.', '_', '+', '-'); "
            "graylift uses it as a directory name on the hosts"
        )


def filename_for(app: str, version: str, kind: PackageKind) -> str:
    return f"{app}-{version}.{kind.value}"


def _fill(template: str, app: str, version: str, kind: PackageKind, url: str = "") -> str:
    return render(template, {"app": app, "version": version, "ext": kind.value, "url": url})


class HttpArtifactStore:
    """A package URL template and a ``.sha256`` URL template (or a fixed digest), with optional credentials."""

    def __init__(self, *, url_template: str, kind: PackageKind, sha256_url_template: str | None = "{url}.sha256",
                 sha256: str | None = None, timeout: float = 30.0, auth: ArtifactAuth | None = None) -> None:
        self.url_template, self.kind = url_template, kind
        self.sha256_url_template, self.fixed_sha256, self.timeout = sha256_url_template, sha256, timeout
        self.auth = auth

    async def resolve(self, app: str, version: str) -> Package:
        """The package of ``version``: checks that the repository has it and reads its sha256."""
        check_version(app, version)
        url = _fill(self.url_template, app, version, self.kind)
        what = f"{app} {version}"
        auth = self.auth.httpx_auth() if self.auth is not None else None
        async with httpx.AsyncClient(timeout=self.timeout, auth=auth, follow_redirects=True) as client:
            size = await self._check_exists(client, what, url)
            sha = self.fixed_sha256
            if sha is None and self.sha256_url_template:
                sha = await self._fetch_sha256(client, what,
                                               _fill(self.sha256_url_template, app, version, self.kind, url))
        if sha is None or not SHA256.match(sha):
            raise self._error(f"{what}: sha256 {sha!r} is not 64 hex digits")
        return Package(app, version, self.kind, filename_for(app, version, self.kind), sha, url=url, size=size)

    def _reaching(self, what: str, method: str, url: str) -> contextlib.AbstractContextManager[None]:
        """httpx's errors of one request, as one ArtifactError (graylift.adapters._http)."""
        return translated(ArtifactError, what, method, url, secrets=self.auth.secrets if self.auth else (),
                          hint=f"is the artifact repository reachable at {safe_url(url)}? check the URL and the "
                               "network", timeout=self.timeout)

    async def _check_exists(self, client: httpx.AsyncClient, what: str, url: str) -> int | None:
        """The package is there; its size in bytes when the server says (Content-Length)."""
        with self._reaching(what, "HEAD", url):
            response = await bounded(client.head(url), self.timeout)
        status, length = response.status_code, response.headers.get("content-length")
        if status in (405, 501):  # a server without HEAD: ask for the headers of a GET
            with self._reaching(what, "GET", url):
                status, length = await bounded(self._headers_of_get(client, url), self.timeout)
        if status in (404, 410):
            raise self._error(f"{what} is not in the repository ({url}): HTTP {status}; check the version")
        self._check_status(status, what, url)
        return int(length) if length and length.isdigit() else None

    @staticmethod
    async def _headers_of_get(client: httpx.AsyncClient, url: str) -> tuple[int, str | None]:
        async with client.stream("GET", url) as streamed:
            return streamed.status_code, streamed.headers.get("content-length")

    async def _fetch_sha256(self, client: httpx.AsyncClient, what: str, sha_url: str) -> str:
        with self._reaching(what, "GET", sha_url):
            response = await bounded(client.get(sha_url), self.timeout)
        if response.status_code in (404, 410):
            raise self._error(f"{what}: no sha256 at {sha_url} (HTTP {response.status_code}); publish the "
                              ".sha256 next to the package or set package.sha256")
        self._check_status(response.status_code, what, sha_url)
        return (response.text.split() or [""])[0].lower()

    def _check_status(self, status: int, what: str, url: str) -> None:
        if status in (401, 403):
            if self.auth is None:
                hint = ("it needs credentials: set username + password_env or token_env on the repository "
                        "or the package")
            else:
                hint = f"check the {self.auth.scheme} credentials and the account's permissions"
            raise self._error(f"{what}: the repository refused access ({url}): HTTP {status}; {hint}")
        if status >= 400:
            raise self._error(f"{what}: the repository answered HTTP {status} for {url}; check the repository")

    def _error(self, message: str) -> ArtifactError:
        """One line, URLs masked, the secret redacted."""
        line = " ".join(message.split())
        return ArtifactError(redact(mask_url(line), self.auth.secrets if self.auth else ()))


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
        return Package(app, version, self.kind, name, digest.hexdigest(), local_path=str(path),
                       size=path.stat().st_size)


def auth_from_config(package: PackageConfig | ResolvedPackage) -> ArtifactAuth | None:
    """The repository credentials, read from the environment variables the package names (never stored)."""
    try:
        if package.token_env is not None:
            return ArtifactAuth.bearer(secret(package.token_env, "package.token_env") or "")
        if package.username is not None:
            return ArtifactAuth.basic(package.username, secret(package.password_env, "package.password_env") or "")
    except ValueError as exc:
        raise ConfigError(str(exc), field="package") from None
    return None


def store_from_config(package: PackageConfig) -> HttpArtifactStore | LocalDirArtifactStore:
    """The store of a package whose repository is resolved (as a release's config snapshot has it)."""
    kind = PackageKind(package.type)
    if package.local_dir is not None:
        return LocalDirArtifactStore(directory=Path(package.local_dir), kind=kind)
    if package.url is None:
        raise ConfigError("package needs url, local_dir or repository", field="package")
    return HttpArtifactStore(url_template=package.url, kind=kind, sha256=package.sha256,
                             sha256_url_template=package.sha256_url or "{url}.sha256", auth=auth_from_config(package))
