"""What a pass puts on a host: the release dir and the package of its version (:class:`graylift.runtime.Target`).

A release's package is pinned in its plan the first time it is resolved, so every host of the release, and a
resumed release, verifies the same sha256. A rollback goes to the dir the host's pre-check found, else the
dir of the build that went live, else the repository's build.
"""

from __future__ import annotations

from typing import Any

from graylift.core.layout import choose_release_dir, release_dir_name
from graylift.core.model import Package
from graylift.core.state import ReleaseKind
from graylift.ports import Fleet
from graylift.runtime import Target
from graylift.store import HostRunRecord, ReleaseRecord, Store


class Targets:
    """The targets of one drive's hosts. ``store`` is the driver's fenced store."""

    def __init__(self, store: Store, fleet: Fleet) -> None:
        self.store, self.fleet = store, fleet
        self._rollback_versions: tuple[str, ...] | None = None
        self._deployed_shas: dict[str, str | None] = {}

    async def target(self, rec: ReleaseRecord, run: HostRunRecord) -> Target:
        """What this pass puts on the host (see :class:`graylift.runtime.Target`)."""
        version = run.target_version

        async def load() -> Package:
            return await self.package(rec.id, version)

        if run.target_dir is not None:  # going back to a release dir a pre-check found on the host
            sha = run.found.releases.get(run.target_dir) if run.found else None
            return Target(version, run.target_dir, sha, load, forward=False)
        pinned = (rec.plan.get("packages") or {}).get(version)
        if rec.kind is ReleaseKind.RELEASE or run.found is None:
            if rec.kind is ReleaseKind.ROLLBACK:  # before its pre-check: what is there is good enough
                return Target(version, version, None, load, forward=False)
            pkg = Package.from_json(pinned) if pinned else await load()
            directory = release_dir_name(version, pkg.sha256, rebuilt_versions=self.fleet.runtime.rebuilt_versions)
            return Target(version, directory, pkg.sha256, _const(pkg))
        # a rollback release: the dir the host still has, else the repository's build
        expected = pinned["sha256"] if pinned else self._deployed_sha(rec, version)
        on_host = choose_release_dir(run.found, version, expected)
        if on_host is not None:
            return Target(version, on_host, run.found.releases.get(on_host), load, forward=False)
        pkg = await load()
        directory = release_dir_name(version, pkg.sha256, rebuilt_versions=self.fleet.runtime.rebuilt_versions)
        return Target(version, directory, pkg.sha256, _const(pkg), forward=False)

    async def package(self, release_id: int, version: str) -> Package:
        """The package of ``version``: pinned in the release's plan, else resolved from the repository and
        pinned (so every host of the release, and a resumed release, verifies the same sha256)."""
        pinned = (self.store.get_release(release_id).plan.get("packages") or {}).get(version)
        if pinned:
            return Package.from_json(pinned)
        pkg = await self.fleet.package(version)
        plan = self.store.get_release(release_id).plan
        packages = dict(plan.get("packages") or {})
        packages.setdefault(version, pkg.to_json())
        self.store.update_release(release_id, plan=plan | {"packages": packages})
        return Package.from_json(packages[version])

    def rollback_versions(self, rec: ReleaseRecord) -> tuple[str, ...]:
        """The app's good versions, newest first: where rollbacks go, so a host keeps them when it prunes.
        Read once per drive (they change only when a release ends)."""
        if self._rollback_versions is None:
            bad = self.store.bad_versions(rec.app, rec.env)
            deployed = self.store.deployed_versions(rec.app, rec.env)
            self._rollback_versions = tuple(dict.fromkeys(d.version for d in deployed if d.version not in bad))
        return self._rollback_versions

    def _deployed_sha(self, rec: ReleaseRecord, version: str) -> str | None:
        """The sha256 ``version`` last went live with; read once per drive (every step of every host asks)."""
        if version not in self._deployed_shas:
            self._deployed_shas[version] = self.store.deployed_sha256(rec.app, rec.env, version)
        return self._deployed_shas[version]


def _const(pkg: Package) -> Any:
    async def value() -> Package:
        return pkg

    return value
