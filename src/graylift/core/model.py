"""Plain, frozen data that every layer speaks: hosts, packages, strategies."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from graylift.core.analysis import AnalysisSettings

# A version, app name or host name that ends up in a path or a shell command must be a plain name.
PLAIN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$")


def is_plain_name(value: str) -> bool:
    """True for names safe to use as one path component: ``2.4.1``, ``order-service``, ``v2+build.7``."""
    return bool(PLAIN_NAME.match(value)) and ".." not in value


class PackageKind(StrEnum):
    WAR = "war"
    JAR = "jar"
    TAR_GZ = "tar.gz"
    ZIP = "zip"


@dataclass(frozen=True)
class Host:
    """One machine that runs an instance of an app, as the CMDB knows it."""

    name: str
    address: str
    port: int = 22
    user: str = "root"
    group: str = "default"
    tags: dict[str, str] = field(default_factory=dict, hash=False, compare=False)
    in_service: bool = True

    @property
    def zone(self) -> str:
        return self.tags.get("zone", "")


@dataclass(frozen=True)
class Package:
    """A resolved package: where to get it and the sha256 every host must verify.

    Exactly one of ``url`` (hosts download it) and ``local_path`` (the controller uploads it) is set.
    """

    app: str
    version: str
    kind: PackageKind
    filename: str
    sha256: str
    url: str | None = None
    local_path: str | None = None
    size: int | None = None  # bytes, when the repository said (pre-staging checks disk space with it)

    def to_json(self) -> dict[str, Any]:
        return {"app": self.app, "version": self.version, "kind": self.kind.value, "filename": self.filename,
                "sha256": self.sha256, "url": self.url, "local_path": self.local_path, "size": self.size}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Package:
        return cls(data["app"], data["version"], PackageKind(data["kind"]), data["filename"], data["sha256"],
                   url=data.get("url"), local_path=data.get("local_path"), size=data.get("size"))


class PromoteMode(StrEnum):
    MANUAL = "manual"
    AUTO = "auto"


class OnFailure(StrEnum):
    PAUSE = "pause"
    ROLLBACK = "rollback"


class OnUnhealthy(StrEnum):
    """What a pre-check that finds the service already unhealthy does."""

    SKIP = "skip"
    FAIL = "fail"


class StrategyKind(StrEnum):
    ROLLING = "rolling"  # canary, then rolling batches under the 50% rule
    BLUE_GREEN = "blue_green"  # the idle group gets the new version, then one switch moves all traffic


class PrestageMode(StrEnum):
    """Whether a release stages the package on every host before its canary (``strategy.prestage``)."""

    AUTO = "auto"  # when the release has at least ``prestage_min_hosts`` hosts
    ALWAYS = "always"
    NEVER = "never"


@dataclass(frozen=True)
class Strategy:
    """How hosts are grouped and paced. Validated from config; used by the planner and the policy."""

    canary_hosts: tuple[str, ...] = ()
    canary_group: str | None = None
    canary_count: int = 1
    bake_seconds: float = 0.0
    promote: PromoteMode = PromoteMode.AUTO
    batch_size: int | None = None
    batch_percent: float | None = None
    pause_seconds: float = 0.0
    max_failed_per_batch: int = 0
    max_failed_total: int = 0
    on_failure: OnFailure = OnFailure.PAUSE
    on_unhealthy: OnUnhealthy = OnUnhealthy.SKIP
    max_parallel: int = 50
    precheck_ahead_seconds: float = 30.0  # how old a pre-check read ahead may be at its host's turn; 0: none
    allow_half_or_more: bool = False
    kind: StrategyKind = StrategyKind.ROLLING
    blue_green_groups: tuple[str, str] = ("blue", "green")
    rollback_window_seconds: float = 1800.0  # blue-green: the old group kept running for a switch back
    analysis: AnalysisSettings | None = None  # canary analysis from metrics during the bake
    # pre-staging (graylift.engine.prestage): only where the fleet can (its runtime has ``peers``)
    prestage: PrestageMode = PrestageMode.AUTO
    prestage_min_hosts: int = 20
    prestage_per_source: int = 1
    prestage_repository_share: int = 64 * 2**20  # bytes the repository serves at once (fanout.repository_seeds)

    def prestages(self, hosts: int) -> bool:
        """Does a release of ``hosts`` hosts pre-stage?

        >>> Strategy(prestage=PrestageMode.AUTO).prestages(19), Strategy(prestage=PrestageMode.AUTO).prestages(20)
        (False, True)
        """
        if self.prestage is PrestageMode.AUTO:
            return hosts >= self.prestage_min_hosts
        return self.prestage is PrestageMode.ALWAYS

    @property
    def has_canary(self) -> bool:
        return bool(self.canary_hosts) or self.canary_group is not None
