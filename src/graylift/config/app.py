"""One app's release settings: its package, deploy dir, commands, health checks, traffic switches,
silencers, inventory and strategy (``apps.<app>`` in graylift.yaml, merged with one env's overrides).

The ``traffic``, ``monitoring`` and ``inventory`` entries are the models of the backend modules, as their
port packages list them (``graylift.adapters.traffic.TRAFFIC`` ...): a new backend needs no change here.
"""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeAlias

from pydantic import AfterValidator, BeforeValidator, Field, ValidationInfo, field_validator

from graylift.adapters.health import HealthConfig
from graylift.adapters.inventory import INVENTORY
from graylift.adapters.inventory.builtin import BuiltinInventoryConfig
from graylift.adapters.monitoring import MONITORING
from graylift.adapters.traffic import TRAFFIC
from graylift.config.package import PackageConfig, RepositoryConfig, ResolvedPackage
from graylift.config.strategy import StrategyConfig
from graylift.core.model import Strategy
from graylift.errors import ConfigError
from graylift.schema import (
    CommandTemplate,
    PlainName,
    Port,
    PositiveSeconds,
    Seconds,
    Section,
    Text,
    check_text,
    fail,
    from_snapshot,
    int_at_least,
    placeholders,
)

if TYPE_CHECKING:  # the unions are assembled when the backend modules are imported
    from graylift.config.root import GrayliftConfig

    TrafficEntry: TypeAlias = Any
    MonitoringEntry: TypeAlias = Any
    InventoryEntry: TypeAlias = Any
else:
    TrafficEntry, MonitoringEntry, InventoryEntry = TRAFFIC.union, MONITORING.union, INVENTORY.union


def _check_deploy_dir(value: str) -> str:
    path = PurePosixPath(value)
    if not path.is_absolute():
        raise fail("deploy_dir", "must be an absolute path", value)
    if ".." in path.parts:
        raise fail("deploy_dir", "must not contain '..'", value)
    if str(path) == "/":
        raise fail("deploy_dir", "must not be / (give the app its own directory)", value)
    return str(path)


class DeployConfig(Section):
    dir: Annotated[str, BeforeValidator(check_text), AfterValidator(_check_deploy_dir)]
    keep_releases: Annotated[int, int_at_least(
        2, "a whole number >= 2 (the running release and one to roll back to)")] = 3


class CommandsConfig(Section):
    start: CommandTemplate
    stop: CommandTemplate
    timeout: PositiveSeconds = 60.0
    drain: CommandTemplate | None = None


def _check_override(value: Any) -> Any:
    if not isinstance(value, dict):
        raise fail("override", "must be a mapping of app sections to override", value)
    return value


class TrafficCheckConfig(Section):
    """After take-out, watch the app's port on the host: traffic from anyone not allowed fails the step.

    Catches a load balancer graylift was not told about (it names that LB's address) before the host stops.
    """

    port: Port
    window: PositiveSeconds = 1.0
    allowed: list[Text] = Field(default_factory=list)  # peer addresses whose traffic is expected (health checkers)


MIGRATION_PLACEHOLDERS = frozenset({"app", "version", "env", "previous_version"})
MigrationTemplate = Annotated[str, BeforeValidator(check_text), placeholders(MIGRATION_PLACEHOLDERS, shell=True)]


class MigrationConfig(Section):
    """A schema migration run once per release, on the controller, before the canary (Flyway, Liquibase,
    Alembic: a command that is safe to run twice). ``default``: what a release declares when it does not say:
    ``expand`` (backward compatible: the previous version works with the new schema) or ``contract`` (not:
    a rollback across it is refused unless overridden with a reason)."""

    command: MigrationTemplate
    timeout: PositiveSeconds = 600.0
    default: Literal["expand", "contract"] = "expand"


class PromotionConfig(Section):
    """An environment's gate: a version comes here only after it succeeded in ``after`` (at least ``min_age``
    seconds ago, and not rolled back there since). Rollbacks are not gated."""

    after: PlainName
    min_age: Seconds = 0.0


class AppConfig(Section):
    """One app's release settings (for one environment once ``GrayliftConfig.app_for_env`` merged it)."""

    package: PackageConfig
    deploy: DeployConfig
    commands: CommandsConfig
    health: HealthConfig = Field(default_factory=HealthConfig, validate_default=True)
    traffic: list[TrafficEntry] = Field(default_factory=list)
    monitoring: list[MonitoringEntry] = Field(default_factory=list)
    inventory: InventoryEntry = Field(default_factory=BuiltinInventoryConfig)
    quiet_period: Seconds = 2.0
    traffic_check: TrafficCheckConfig | None = None
    strategy: StrategyConfig = Field(default_factory=StrategyConfig)
    promotion: PromotionConfig | None = None  # usually per env: envs: {prod: {promotion: {after: staging}}}
    compatibility: Text | None = None  # a note `plan` shows: how two versions side by side get along
    migration: MigrationConfig | None = None
    envs: dict[PlainName, Annotated[dict[str, Any], BeforeValidator(_check_override)]] = Field(
        default_factory=dict)

    @field_validator("health")
    @classmethod
    def _some_health_check(cls, value: HealthConfig, info: ValidationInfo) -> HealthConfig:
        if not value.none and not value.probes() and not from_snapshot(info):
            raise ValueError("no health check, so precheck, health and bake would pass without checking "
                             "anything: add process, tcp_port, http or command, or `none: true` to release "
                             "without a check")
        return value

    @classmethod
    def from_snapshot(cls, data: Any) -> AppConfig:
        """The app config a release stored when it started (``graylift.wiring.snapshot``).

        Rules added to the config after that release started are not applied to it (see
        :func:`graylift.schema.from_snapshot`), so a release started before an upgrade is resumed with the
        config it started with.
        """
        return cls.model_validate(data, context={"snapshot": True})

    def strategy_model(self) -> Strategy:
        """The strategy as the planner and policy use it."""
        s = self.strategy
        return Strategy(
            canary_hosts=tuple(s.canary.hosts),
            canary_group=s.canary.group,
            canary_count=s.canary.count,
            bake_seconds=s.canary.bake,
            promote=s.canary.promote,
            batch_size=s.batch.size,
            batch_percent=s.batch.percent,
            pause_seconds=s.pause,
            max_failed_per_batch=s.failure_budget.per_batch,
            max_failed_total=s.failure_budget.total,
            on_failure=s.on_failure,
            on_unhealthy=s.on_unhealthy,
            max_parallel=s.max_parallel,
            precheck_ahead_seconds=s.precheck_ahead,
            allow_half_or_more=s.allow_half_or_more,
            kind=s.kind,
            blue_green_groups=(s.blue_green.groups[0], s.blue_green.groups[1]),
            rollback_window_seconds=s.blue_green.rollback_window,
            analysis=s.canary.analysis.settings() if s.canary.analysis else None,
            prestage=s.prestage, prestage_min_hosts=s.prestage_min_hosts,
            prestage_per_source=s.prestage_per_source, prestage_repository_share=s.prestage_repository_share,
        )

    def resolved_package(self, config: GrayliftConfig | None = None) -> ResolvedPackage:
        """The package source with ``repository`` replaced by that repository's url/sha256_url/local_dir.

        Credentials given on the package replace the repository's (the whole scheme); ``rebuilt_versions``
        given on the package wins over the repository's.
        """
        p = self.package
        if p.repository is None:
            return ResolvedPackage(type=p.type, url=p.url, sha256_url=p.sha256_url, local_dir=p.local_dir,
                                   sha256=p.sha256, versions_url=p.versions_url, username=p.username,
                                   password_env=p.password_env, token_env=p.token_env,
                                   rebuilt_versions=p.rebuilt_versions)
        repos = config.repositories if config is not None else {}
        repo = repos.get(p.repository)
        if repo is None:
            known = ", ".join(sorted(repos)) or "none are defined"
            raise ConfigError(f"unknown repository {p.repository!r}; known repositories: {known}",
                              field="package.repository")
        access: PackageConfig | RepositoryConfig = p if p.has_credentials else repo
        rebuilt = p.rebuilt_versions if "rebuilt_versions" in p.model_fields_set else repo.rebuilt_versions
        return ResolvedPackage(type=p.type, url=repo.url, sha256_url=repo.sha256_url,
                               local_dir=repo.local_dir, sha256=p.sha256, repository=p.repository,
                               versions_url=repo.versions_url,
                               username=access.username, password_env=access.password_env,
                               token_env=access.token_env, rebuilt_versions=rebuilt)
