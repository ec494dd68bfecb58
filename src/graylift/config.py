"""The graylift config file (graylift.yaml): models, loader, and the helpers the engine calls.

``load_config(path)`` reads YAML, validates it with the pydantic models below and turns every problem
into one :class:`graylift.errors.ConfigError` that names the file, the line and the field of each problem.
The per-env overrides (``apps.<app>.envs.<env>``) are deep-merged over the app's sections on the raw data
before validation, so an error in an override names the override's own line.

To add a traffic backend, monitoring system or inventory: write a model with ``type: Literal["<name>"]``,
add it to ``TrafficEntry`` / ``MonitoringEntry`` / ``InventoryEntry`` and build its adapter in
``graylift.wiring``. Secrets are never fields: a ``*_env`` field names the environment variable that
holds one, read when the adapter is built, and a URL with credentials in it (``https://user:pass@...``)
is refused in every URL field: it would end up in logs, in argv on the hosts and in the database.
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, Literal, Union, get_args, get_origin
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from graylift import yamldoc
from graylift.core import template as templates
from graylift.core.model import OnFailure, OnUnhealthy, PackageKind, PromoteMode, Strategy, is_plain_name
from graylift.core.template import HOST_PLACEHOLDERS
from graylift.errors import ConfigError
from graylift.redact import mask_url

DEFAULT_STATE_DB = Path("~/.graylift/state.db")
STATE_ENV_VAR = "GRAYLIFT_DB"

# Placeholders each kind of template may use.
COMMAND_PLACEHOLDERS = frozenset(
    {"app", "version", "deploy_dir", "current", "release_dir", "host", "address"})

TRAFFIC_COMMAND_PLACEHOLDERS = frozenset({"host", "address", "app", "port"})
ETCD_KEY_PLACEHOLDERS = frozenset({"service", "address", "host", "port"})
CONSUL_ID_PLACEHOLDERS = ETCD_KEY_PLACEHOLDERS
EUREKA_ID_PLACEHOLDERS = frozenset({"host", "address", "app", "port"})
SILENCE_PLACEHOLDERS = frozenset({"host", "address", "reason", "until", "until_epoch"})
INVENTORY_PLACEHOLDERS = frozenset({"app", "env"})
PACKAGE_URL_PLACEHOLDERS = frozenset({"app", "version", "ext"})
SHA256_URL_PLACEHOLDERS = PACKAGE_URL_PLACEHOLDERS | {"url"}

Path_ = tuple[str | int, ...]


# --------------------------------------------------------------------------------------------- templates


def _show(value: Any) -> str:
    """A value as a user wrote it in YAML, short."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif value is None:
        text = "null"
    elif isinstance(value, dict):
        text = "a mapping"
    elif isinstance(value, list):
        text = "a list"
    elif isinstance(value, str):
        text = repr(mask_url(value))  # a URL's credentials are never echoed
    else:
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def render_command(template: str, values: Mapping[str, str]) -> str:
    """Fill a command template; every value is shell-quoted.

    Placeholders: {app} {version} {deploy_dir} {current} {release_dir} {host} {address}. An unknown
    placeholder, or a known one without a value, is a ConfigError.
    """
    return templates.render(template, values, allowed=COMMAND_PLACEHOLDERS, quote=True)


def render_template(template: str, values: Mapping[str, str],
                    allowed: frozenset[str] = COMMAND_PLACEHOLDERS) -> str:
    """Fill a non-shell template (server name, matcher value, URL) without quoting."""
    return templates.render(template, values, allowed=allowed)


def _template(allowed: frozenset[str], *, shell: bool = False) -> AfterValidator:
    def check(value: str) -> str:
        problem = templates.problem(value, allowed, shell=shell)
        if problem:
            raise PydanticCustomError("template", "{problem}", {"problem": problem})
        return value

    return AfterValidator(check)


# --------------------------------------------------------------------------------------------- value types


def _fail(kind: str, message: str, value: Any) -> PydanticCustomError:
    return PydanticCustomError(kind, message + ", got {got}", {"got": _show(value)})


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _int_at_least(minimum: int, words: str) -> BeforeValidator:
    def check(value: Any) -> Any:
        if not _is_int(value) or value < minimum:
            raise _fail("whole_number", f"must be {words}", value)
        return value

    return BeforeValidator(check)


def _seconds(*, positive: bool) -> BeforeValidator:
    def check(value: Any) -> Any:
        if not _is_number(value) or value < 0 or (positive and value == 0):
            words = "a positive number of seconds" if positive else "a number of seconds >= 0"
            raise _fail("seconds", f"must be {words}", value)
        return float(value)

    return BeforeValidator(check)


def _check_port(value: Any) -> Any:
    if not _is_int(value) or not 1 <= value <= 65535:
        raise _fail("port", "must be a port number from 1 to 65535", value)
    return value


def _check_bool(value: Any) -> Any:
    if not isinstance(value, bool):
        raise _fail("bool", "must be true or false", value)
    return value


def _check_text(value: Any) -> Any:
    if not isinstance(value, str) or not value.strip():
        raise _fail("text", "must be a non-empty text string", value)
    return value


def _check_plain(value: str) -> str:
    if not is_plain_name(value):
        raise PydanticCustomError(
            "plain_name", "must be a plain name (letters, digits, . _ + -; no '..'), got {got}",
            {"got": _show(value)})
    return value


URL_CREDENTIALS = "credentials in a URL end up in logs and argv; use username + password_env or token_env"


def _has_userinfo(url: str) -> bool:
    """True when ``url`` carries a ``user[:password]@`` before its host."""
    try:
        return "@" in urlsplit(url).netloc
    except ValueError:
        return mask_url(url) != url


def _check_no_userinfo(value: str, info: ValidationInfo) -> str:
    if _has_userinfo(value) and not _from_snapshot(info):
        raise PydanticCustomError("url_credentials", URL_CREDENTIALS)
    return value


def _from_snapshot(info: ValidationInfo) -> bool:
    """Validating a release's stored snapshot (:meth:`AppConfig.from_snapshot`), not a config file.

    A release keeps the config it started with, so rules added later (no credentials in URLs, a health
    check or ``none: true``) are not applied to it: a release started before an upgrade can still be resumed.
    """
    return bool((info.context or {}).get("snapshot"))


def _has_password(url: str) -> bool:
    """True when ``url`` carries ``user:password@`` (a user name alone is no secret)."""
    try:
        return urlsplit(url).password is not None
    except ValueError:
        return _has_userinfo(url)


def _check_http_url(value: str) -> str:
    if not re.match(r"^https?://[^/\s]+", value):
        raise _fail("url", "must be an http:// or https:// URL", value)
    return value


def _path_in_context(value: Any, info: ValidationInfo) -> Any:
    """Expand ``~``; a relative path is relative to the config file's directory (context ``base_dir``)."""
    if not isinstance(value, Path):
        _check_text(value)
    path = Path(value).expanduser()
    base = (info.context or {}).get("base_dir")
    if not path.is_absolute() and base is not None:
        path = Path(base) / path
    return path


def _check_env_name(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", value):
        # The value is not echoed: it may be the secret itself, written where its variable's name belongs.
        raise PydanticCustomError("env_name", "must be the NAME of an environment variable (letters, digits, "
                                  "_, e.g. NACOS_PASSWORD), not the secret itself")
    return value


Text = Annotated[str, BeforeValidator(_check_text)]
PlainName = Annotated[str, BeforeValidator(_check_text), AfterValidator(_check_plain)]
PositiveInt = Annotated[int, _int_at_least(1, "a positive whole number")]
NonNegativeInt = Annotated[int, _int_at_least(0, "a whole number >= 0")]
Port = Annotated[int, BeforeValidator(_check_port)]
Seconds = Annotated[float, _seconds(positive=False)]
PositiveSeconds = Annotated[float, _seconds(positive=True)]
Flag = Annotated[bool, BeforeValidator(_check_bool)]
HttpUrl = Annotated[str, BeforeValidator(_check_text), AfterValidator(_check_no_userinfo),
                    AfterValidator(_check_http_url)]
LocalPath = Annotated[Path, BeforeValidator(_path_in_context)]
CommandTemplate = Annotated[str, BeforeValidator(_check_text), _template(COMMAND_PLACEHOLDERS, shell=True)]
HostTemplate = Annotated[str, BeforeValidator(_check_text), _template(HOST_PLACEHOLDERS)]
PackageUrlTemplate = Annotated[str, BeforeValidator(_check_text), AfterValidator(_check_no_userinfo),
                               _template(PACKAGE_URL_PLACEHOLDERS)]
Sha256UrlTemplate = Annotated[str, BeforeValidator(_check_text), AfterValidator(_check_no_userinfo),
                              _template(SHA256_URL_PLACEHOLDERS)]
# The name of an environment variable holding a secret: the config (and every release's snapshot of it)
# never holds the secret itself.
EnvName = Annotated[str, BeforeValidator(_check_text), AfterValidator(_check_env_name)]


class Section(BaseModel):
    """Base of every config section: unknown keys are errors; instances are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class _UserPassword(Section):
    """``username`` + ``password_env`` (the variable holding the password), both or neither."""

    @model_validator(mode="after")
    def _pair(self) -> _UserPassword:
        username, password_env = getattr(self, "username", None), getattr(self, "password_env", None)
        if (username is None) != (password_env is None):
            raise ValueError("give both username and password_env (the environment variable holding the "
                             "password), or neither")
        return self


# --------------------------------------------------------------------------------------------- sections


class SshConfig(Section):
    user: PlainName = "root"
    port: Port = 22
    key: LocalPath | None = None
    known_hosts: LocalPath = Field(default=Path("~/.ssh/known_hosts"), validate_default=True)
    connect_timeout: PositiveSeconds = 10.0
    command_timeout: PositiveSeconds = 120.0
    max_connections: PositiveInt = 200


def _check_basic_username(value: str) -> str:
    if ":" in value:
        raise _fail("username", "must not contain ':' (HTTP basic auth puts one between user and password)", value)
    return value


BasicUsername = Annotated[str, BeforeValidator(_check_text), AfterValidator(_check_basic_username)]
LOCAL_DIR_NEEDS_NO_CREDENTIALS = ("username, password_env and token_env are for a url repository (hosts "
                                  "download with them); a local_dir is read by graylift itself")


class _RepositoryAccess(_UserPassword):
    """Credentials of a url repository or package: ``username`` + ``password_env`` (HTTP basic auth) or
    ``token_env`` (``Authorization: Bearer``), at most one. The secrets stay in the environment."""

    @property
    def has_credentials(self) -> bool:
        return getattr(self, "username", None) is not None or getattr(self, "token_env", None) is not None

    @model_validator(mode="after")
    def _one_scheme(self) -> _RepositoryAccess:
        if getattr(self, "username", None) is not None and getattr(self, "token_env", None) is not None:
            raise ValueError("give username + password_env (basic auth) or token_env (a bearer token), not both")
        if self.has_credentials and getattr(self, "local_dir", None) is not None:
            raise ValueError(LOCAL_DIR_NEEDS_NO_CREDENTIALS)
        return self


class RepositoryConfig(_RepositoryAccess):
    """A named artifact repository: a URL template (hosts download) or a local dir (graylift uploads)."""

    url: PackageUrlTemplate | None = None
    sha256_url: Sha256UrlTemplate | None = None
    local_dir: LocalPath | None = None
    username: BasicUsername | None = None
    password_env: EnvName | None = None
    token_env: EnvName | None = None
    rebuilt_versions: Flag = False  # a version may be rebuilt (same version, new sha256): see docs/config.md

    @model_validator(mode="after")
    def _one_source(self) -> RepositoryConfig:
        if (self.url is None) == (self.local_dir is None):
            raise ValueError("give exactly one of url (hosts download) or local_dir (graylift uploads)")
        if self.sha256_url is not None and self.url is None:
            raise ValueError("sha256_url needs url")
        if self.url is not None and self.sha256_url is None:
            raise ValueError('a url repository needs sha256_url (e.g. "{url}.sha256") so hosts can verify '
                             "the package")
        return self


def _check_sha256(value: str) -> str:
    if not re.fullmatch(r"[0-9a-fA-F]{64}", value):
        raise _fail("sha256", "must be 64 hex digits", value)
    return value.lower()


class PackageConfig(_RepositoryAccess):
    """Where an app's packages come from; credentials given here replace the repository's."""

    type: PackageKind
    repository: PlainName | None = None
    url: PackageUrlTemplate | None = None
    sha256_url: Sha256UrlTemplate | None = None
    local_dir: LocalPath | None = None
    sha256: Annotated[str, BeforeValidator(_check_text), AfterValidator(_check_sha256)] | None = None
    username: BasicUsername | None = None
    password_env: EnvName | None = None
    token_env: EnvName | None = None
    rebuilt_versions: Flag = False  # when not given, the repository's

    @field_validator("repository")
    @classmethod
    def _repository_exists(cls, value: str | None, info: ValidationInfo) -> str | None:
        known = (info.context or {}).get("repositories")
        if value is not None and known is not None and value not in known:
            raise _unknown_repository(value, known)
        return value

    @model_validator(mode="after")
    def _one_source(self, info: ValidationInfo) -> PackageConfig:
        if self.repository is not None:
            given = [k for k in ("url", "sha256_url", "local_dir") if getattr(self, k) is not None]
            if given:
                raise ValueError(f"give either repository or {'/'.join(given)}, not both")
            if self.has_credentials and self.repository in (info.context or {}).get("local_repositories", ()):
                raise ValueError(f"repository {self.repository} is a local_dir: {LOCAL_DIR_NEEDS_NO_CREDENTIALS}")
            return self
        if self.url is None and self.local_dir is None:
            raise ValueError("needs a repository (a name from `repositories`) or a url or a local_dir")
        if self.url is not None and self.local_dir is not None:
            raise ValueError("give either url or local_dir, not both")
        if self.sha256_url is not None and self.url is None:
            raise ValueError("sha256_url needs url")
        if self.url is not None and self.sha256_url is None and self.sha256 is None:
            raise ValueError('a url package needs sha256_url (e.g. "{url}.sha256") or sha256 so hosts can '
                             "verify it")
        return self


def _unknown_repository(name: str, known: Any) -> PydanticCustomError:
    names = ", ".join(sorted(str(k) for k in known)) or "none are defined"
    return PydanticCustomError("unknown_repository", "unknown repository {name}; known repositories: {known}",
                               {"name": _show(name), "known": names})


class ResolvedPackage(BaseModel):
    """Where an app's packages come from, with the repository reference resolved.

    Credentials are names only: ``password_env`` / ``token_env`` name the environment variables that hold
    the secrets (read when the adapters are built), so this model can be stored with a release.
    ``rebuilt_versions``: the same version may come back with another sha256 (e.g. ``-SNAPSHOT`` builds);
    when false, versions are immutable.
    """

    model_config = ConfigDict(frozen=True)

    type: PackageKind
    url: str | None = None  # template: {app} {version} {ext}
    sha256_url: str | None = None  # template: {app} {version} {ext} {url}
    local_dir: Path | None = None
    sha256: str | None = None  # fixed digest
    repository: str | None = None
    username: str | None = None  # HTTP basic auth, with password_env
    password_env: str | None = None
    token_env: str | None = None  # a bearer token
    rebuilt_versions: bool = False


def _check_deploy_dir(value: str) -> str:
    path = PurePosixPath(value)
    if not path.is_absolute():
        raise _fail("deploy_dir", "must be an absolute path", value)
    if ".." in path.parts:
        raise _fail("deploy_dir", "must not contain '..'", value)
    if str(path) == "/":
        raise _fail("deploy_dir", "must not be / (give the app its own directory)", value)
    return str(path)


class DeployConfig(Section):
    dir: Annotated[str, BeforeValidator(_check_text), AfterValidator(_check_deploy_dir)]
    keep_releases: Annotated[int, _int_at_least(
        2, "a whole number >= 2 (the running release and one to roll back to)")] = 3


class CommandsConfig(Section):
    start: CommandTemplate
    stop: CommandTemplate
    timeout: PositiveSeconds = 60.0
    drain: CommandTemplate | None = None


def _check_status(value: Any) -> Any:
    if not _is_int(value) or not 100 <= value <= 599:
        raise _fail("status", "must be an HTTP status from 100 to 599", value)
    return value


class HttpCheckConfig(Section):
    url: Annotated[HttpUrl, _template(COMMAND_PLACEHOLDERS)]
    status: Annotated[int, BeforeValidator(_check_status)] = 200
    body: str | None = None


HEALTH_PROBES = ("process", "tcp_port", "http", "command")


class HealthConfig(Section):
    """The app's probes. Without any, ``none: true`` must say so: precheck, health and bake then check nothing."""

    process: Annotated[Text, _template(COMMAND_PLACEHOLDERS)] | None = None
    tcp_port: Port | None = None
    http: HttpCheckConfig | None = None
    command: CommandTemplate | None = None
    retries: PositiveInt = 60
    interval: Seconds = 0.5
    timeout: PositiveSeconds = 5.0
    none: Flag = False

    def probes(self) -> list[str]:
        """The names of the probes given."""
        return [name for name in HEALTH_PROBES if getattr(self, name) is not None]

    @model_validator(mode="after")
    def _none_or_probes(self) -> HealthConfig:
        given = self.probes()
        if self.none and given:
            raise ValueError(f"none: true means no health check, but {', '.join(given)} "
                             f"{'is' if len(given) == 1 else 'are'} given; keep one or the other "
                             "(in an env override, set the probes to null)")
        return self


def _check_socket(value: str) -> str:
    if value.startswith("/") or re.fullmatch(r"tcp://[^:/\s]+:\d{1,5}", value):
        return value
    raise _fail("socket", "must be a unix socket path (/run/...) or tcp://HOST:PORT", value)


class HaproxyTraffic(Section):
    """HAProxy runtime API: set the server to drain, wait for sessions to reach 0, then maint."""

    type: Literal["haproxy"]
    socket: Annotated[str, BeforeValidator(_check_text), AfterValidator(_check_socket)]
    backend: Text
    server: HostTemplate = "{host}"
    drain_timeout: Seconds = 30.0


def _check_zk_root(value: str) -> str:
    if not value.startswith("/") or ".." in value.split("/"):
        raise _fail("zk_root", "must be an absolute ZooKeeper path like /dubbo", value)
    return value.rstrip("/") or "/"


class ZookeeperTraffic(Section):
    """A Dubbo provider registration in ZooKeeper."""

    type: Literal["zookeeper"]
    hosts: Text
    root: Annotated[str, BeforeValidator(_check_text), AfterValidator(_check_zk_root)] = "/dubbo"
    service: Text
    port: Port
    propagation_seconds: Seconds = 2.0


def _check_abs_path(value: str) -> str:
    path = PurePosixPath(value)
    if not path.is_absolute() or ".." in path.parts:
        raise _fail("abs_path", "must be an absolute path without '..'", value)
    return str(path)


def _non_empty(value: Any) -> Any:
    if isinstance(value, list) and not value:
        raise PydanticCustomError("non_empty", "must list at least one item")
    return value


def _template_using(required: frozenset[str], words: str) -> AfterValidator:
    def check(value: str) -> str:
        if not templates.names(value) & required:
            raise _fail("template", f"must use {words}", value)
        return value

    return AfterValidator(check)


AbsPath = Annotated[str, BeforeValidator(_check_text), AfterValidator(_check_abs_path)]
ZkPath = Annotated[str, BeforeValidator(_check_text), AfterValidator(_check_zk_root)]
ShellHookTemplate = Annotated[str, BeforeValidator(_check_text), _template(TRAFFIC_COMMAND_PLACEHOLDERS, shell=True)]
EtcdKeyTemplate = Annotated[str, BeforeValidator(_check_text), _template(ETCD_KEY_PLACEHOLDERS)]
ConsulUrlTemplate = Annotated[HttpUrl, _template(HOST_PLACEHOLDERS)]
ConsulIdTemplate = Annotated[str, BeforeValidator(_check_text), _template(CONSUL_ID_PLACEHOLDERS)]
EurekaIdTemplate = Annotated[str, BeforeValidator(_check_text), _template(EUREKA_ID_PLACEHOLDERS)]
SilenceTemplate = Annotated[str, BeforeValidator(_check_text), _template(SILENCE_PLACEHOLDERS, shell=True)]
InventoryUrl = Annotated[HttpUrl, _template(INVENTORY_PLACEHOLDERS)]


class NginxTraffic(Section):
    """Open-source nginx: toggle ``down`` on the host's line of an upstream include, test, reload."""

    type: Literal["nginx"]
    include: AbsPath
    upstream: Text
    port: Port
    lb_host: Text | None = None  # None: nginx runs on the controller; else reached over SSH
    lb_port: Port = 22
    lb_user: PlainName = "root"
    seed: Flag = False  # a missing include is written from the release's hosts
    server_params: str = ""
    keepalive: PositiveInt | None = None
    nginx_bin: Text = "nginx"
    nginx_conf: AbsPath | None = None
    nginx_globals: Text | None = None
    reload_settle: Seconds = 0.5
    name: Text | None = None


class NginxPlusTraffic(Section):
    """nginx Plus REST API: drain, wait for active connections to end, down."""

    type: Literal["nginx_plus"]
    url: HttpUrl
    upstream: Text
    port: Port
    api_version: PositiveInt = 8
    drain_timeout: Seconds = 30.0
    up_timeout: Seconds = 30.0
    poll_interval: PositiveSeconds = 0.2
    timeout: PositiveSeconds = 5.0
    headers: dict[Text, str] = Field(default_factory=dict)
    headers_env: dict[Text, EnvName] = Field(default_factory=dict)  # header -> variable holding its value
    name: Text | None = None


class CommandTraffic(Section):
    """The user's own scripts (docs/traffic.md): verify prints ``out`` or ``in`` on its last line."""

    type: Literal["command"]
    take_out: ShellHookTemplate
    put_back: ShellHookTemplate
    verify: ShellHookTemplate
    in_flight: ShellHookTemplate | None = None
    port: Port | None = None
    run_on: Literal["controller", "host"] = "controller"
    timeout: PositiveSeconds = 60.0
    name: Text | None = None


class EtcdTraffic(_UserPassword):
    """Service instances as etcd v3 keys (HTTP/JSON gateway)."""

    type: Literal["etcd"]
    url: HttpUrl
    service: Text
    port: Port
    key_template: EtcdKeyTemplate = "/services/{service}/{address}:{port}"
    mode: Literal["remove", "field"] = "remove"
    parked_prefix: ZkPath = "/graylift/parked"
    status_field: Text = "status"
    out_value: Text = "down"
    in_value: Text = "up"
    username: Text | None = None
    password_env: EnvName | None = None
    propagation_seconds: Seconds = 0.0
    timeout: PositiveSeconds = 10.0


class Dubbo3Traffic(Section):
    """Dubbo 3 application-level providers on ZooKeeper: a v3 configurator rule disables the address."""

    type: Literal["dubbo3"]
    hosts: Text
    application: Text
    port: Port
    root: ZkPath = "/dubbo"
    group: Text = "dubbo"
    instances_root: ZkPath = "/services"
    propagation_seconds: Seconds = 0.0
    timeout: PositiveSeconds = 10.0


class NacosTraffic(_UserPassword):
    """Nacos naming (open API v1): enabled=false on the instance."""

    type: Literal["nacos"]
    url: HttpUrl
    service: Text
    port: Port
    namespace: str = ""
    group: Text = "DEFAULT_GROUP"
    cluster: Text = "DEFAULT"
    ephemeral: Flag = True
    username: Text | None = None
    password_env: EnvName | None = None
    propagation_seconds: Seconds = 0.0
    timeout: PositiveSeconds = 10.0


class ConsulTraffic(Section):
    """Consul service maintenance mode on the host's own agent."""

    type: Literal["consul"]
    service: Text
    port: Port | None = None  # only for {port} in service_id
    agent_url: ConsulUrlTemplate = "http://{address}:8500"
    service_id: ConsulIdTemplate = "{service}"
    token_env: EnvName | None = None
    reason: Text = "graylift release"
    propagation_seconds: Seconds = 0.0
    timeout: PositiveSeconds = 10.0


class EurekaTraffic(_UserPassword):
    """Eureka status override OUT_OF_SERVICE while the host is out."""

    type: Literal["eureka"]
    url: HttpUrl
    app: Text
    port: Port
    instance_id: EurekaIdTemplate = "{host}:{app}:{port}"
    username: Text | None = None
    password_env: EnvName | None = None
    propagation_seconds: Seconds = 0.0
    timeout: PositiveSeconds = 10.0


TrafficEntry = Annotated[
    Union[HaproxyTraffic, ZookeeperTraffic, NginxTraffic, NginxPlusTraffic, CommandTraffic,  # noqa: UP007
          EtcdTraffic, Dubbo3Traffic, NacosTraffic, ConsulTraffic, EurekaTraffic],
    Field(discriminator="type")]


class AlertmanagerMonitoring(Section):
    type: Literal["alertmanager"]
    url: HttpUrl
    label: Text = "instance"
    value: HostTemplate = "{host}"
    silence_minutes: PositiveSeconds = 30.0


class ZabbixMonitoring(_UserPassword):
    """Zabbix maintenance (JSON-RPC): an API token (token_env), or username + password_env."""

    type: Literal["zabbix"]
    url: HttpUrl
    token_env: EnvName | None = None
    username: Text | None = None
    password_env: EnvName | None = None
    host: HostTemplate = "{host}"  # the Zabbix technical host name
    legacy_auth: Flag = False
    timeout: PositiveSeconds = 10.0
    silence_minutes: PositiveSeconds = 30.0

    @model_validator(mode="after")
    def _one_credential(self) -> ZabbixMonitoring:
        if (self.token_env is None) == (self.username is None):
            raise ValueError("give token_env (the environment variable holding an API token) or "
                             "username + password_env, exactly one of them")
        return self


class CommandMonitoring(Section):
    """Site-specific mute/unmute/check commands on the controller (docs/registries.md)."""

    type: Literal["command"]
    mute_command: Annotated[SilenceTemplate, _template_using(frozenset({"until", "until_epoch"}),
                                                             "{until} or {until_epoch} so a silence lapses "
                                                             "by itself")]
    unmute_command: SilenceTemplate
    check_command: SilenceTemplate
    timeout: PositiveSeconds = 60.0
    name: PlainName = "command"
    silence_minutes: PositiveSeconds = 30.0


MonitoringEntry = Annotated[Union[AlertmanagerMonitoring, ZabbixMonitoring, CommandMonitoring],  # noqa: UP007
                            Field(discriminator="type")]


# --------------------------------------------------------------------------------------------- inventory


class BuiltinInventoryConfig(Section):
    """Hosts imported with `graylift hosts import` into the state database."""

    type: Literal["builtin"] = "builtin"


def _check_netbox_source(value: str, allowed: tuple[str, ...], tag_prefix: bool) -> str:
    if value in allowed or (value.startswith("cf:") and len(value) > 3):
        return value
    if tag_prefix and value.startswith("tag-prefix:") and len(value) > len("tag-prefix:"):
        return value
    extra = ", tag-prefix:PREFIX" if tag_prefix else ""
    raise _fail("source", f"must be one of {', '.join(allowed)}, cf:FIELD{extra}", value)


def _check_page_size(value: Any) -> Any:
    if not _is_int(value) or not 1 <= value <= 1000:
        raise _fail("page_size", "must be a whole number from 1 to 1000", value)
    return value


def _check_filter(value: Any) -> Any:
    """A NetBox filter value: a text template, or a list of them (the parameter repeated)."""
    for item in value if isinstance(value, list) else [value]:
        if not isinstance(item, str) or not item.strip():
            raise _fail("filter", "must be a non-empty text or a list of texts", value)
        problem = templates.problem(item, INVENTORY_PLACEHOLDERS)
        if problem:
            raise PydanticCustomError("template", "{problem}", {"problem": problem})
    return value


NetboxFilter = Annotated[str | list[str], BeforeValidator(_check_filter)]
NetboxKind = Literal["devices", "virtual-machines"]


def _default_kinds() -> list[NetboxKind]:
    return ["devices"]


def _default_filters() -> dict[str, str | list[str]]:
    return {"tag": "{app}"}


class NetboxInventoryConfig(Section):
    """NetBox devices and/or virtual machines (docs/inventory.md)."""

    type: Literal["netbox"]
    url: HttpUrl
    token_env: EnvName | None = "NETBOX_TOKEN"
    kinds: Annotated[list[NetboxKind], BeforeValidator(_non_empty)] = Field(default_factory=_default_kinds)
    filters: dict[Text, NetboxFilter] = Field(default_factory=_default_filters)
    group_from: Annotated[str, BeforeValidator(_check_text), AfterValidator(
        lambda v: _check_netbox_source(v, ("role", "site", "rack", "cluster", "none"), True))] = "role"
    zone_from: Annotated[str, BeforeValidator(_check_text), AfterValidator(
        lambda v: _check_netbox_source(v, ("site", "rack", "cluster", "none"), False))] = "site"
    in_service_statuses: Annotated[list[Text], BeforeValidator(_non_empty)] = Field(default_factory=lambda: ["active"])
    user: PlainName = "root"
    port: Port = 22
    page_size: Annotated[int, BeforeValidator(_check_page_size)] = 200
    timeout: PositiveSeconds = 10.0
    verify_tls: Flag = True


class HttpInventoryConfig(Section):
    """A JSON host list at a URL (``{app}``, ``{env}``)."""

    type: Literal["http"]
    url: InventoryUrl
    token_env: EnvName | None = None
    timeout: PositiveSeconds = 10.0
    verify_tls: Flag = True


InventoryEntry = Annotated[Union[BuiltinInventoryConfig, NetboxInventoryConfig, HttpInventoryConfig],  # noqa: UP007
                           Field(discriminator="type")]


class CanaryConfig(Section):
    hosts: list[PlainName] = Field(default_factory=list)
    group: PlainName | None = None
    count: PositiveInt = 1
    bake: Seconds = 0.0
    promote: PromoteMode = PromoteMode.AUTO

    @model_validator(mode="after")
    def _hosts_or_group(self) -> CanaryConfig:
        if self.hosts and self.group is not None:
            raise ValueError("give either hosts or group, not both")
        return self


def _check_percent(value: Any) -> Any:
    if not _is_number(value) or not 0 < value < 100:
        raise _fail("percent", "must be a number greater than 0 and less than 100", value)
    return float(value)


class BatchConfig(Section):
    size: PositiveInt | None = None
    percent: Annotated[float, BeforeValidator(_check_percent)] | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> BatchConfig:
        if (self.size is None) == (self.percent is None):
            raise ValueError("give exactly one of size or percent "
                             "(in an env override, set the other to null)")
        return self


class FailureBudgetConfig(Section):
    per_batch: NonNegativeInt = 0
    total: NonNegativeInt = 0


class StrategyConfig(Section):
    canary: CanaryConfig = Field(default_factory=CanaryConfig)
    batch: BatchConfig = Field(default_factory=lambda: BatchConfig(size=1))
    max_parallel: PositiveInt = 50
    pause: Seconds = 0.0
    failure_budget: FailureBudgetConfig = Field(default_factory=FailureBudgetConfig)
    on_failure: OnFailure = OnFailure.PAUSE
    on_unhealthy: OnUnhealthy = OnUnhealthy.SKIP
    allow_half_or_more: Flag = False


def _check_override(value: Any) -> Any:
    if not isinstance(value, dict):
        raise _fail("override", "must be a mapping of app sections to override", value)
    return value


class TrafficCheckConfig(Section):
    """After take-out, watch the app's port on the host: traffic from anyone not allowed fails the step.

    Catches a load balancer graylift was not told about (it names that LB's address) before the host stops.
    """

    port: Port
    window: PositiveSeconds = 1.0
    allowed: list[Text] = Field(default_factory=list)  # peer addresses whose traffic is expected (health checkers)


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
    envs: dict[PlainName, Annotated[dict[str, Any], BeforeValidator(_check_override)]] = Field(
        default_factory=dict)

    @field_validator("health")
    @classmethod
    def _some_health_check(cls, value: HealthConfig, info: ValidationInfo) -> HealthConfig:
        if not value.none and not value.probes() and not _from_snapshot(info):
            raise ValueError("no health check, so precheck, health and bake would pass without checking "
                             "anything: add process, tcp_port, http or command, or `none: true` to release "
                             "without a check")
        return value

    @classmethod
    def from_snapshot(cls, data: Any) -> AppConfig:
        """The app config a release stored when it started (``graylift.wiring.snapshot``).

        Rules added to the config after that release started are not applied to it (see ``_from_snapshot``),
        so a release started before an upgrade is resumed with the config it started with.
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
            allow_half_or_more=s.allow_half_or_more,
        )

    def resolved_package(self, config: GrayliftConfig | None = None) -> ResolvedPackage:
        """The package source with ``repository`` replaced by that repository's url/sha256_url/local_dir.

        Credentials given on the package replace the repository's (the whole scheme); ``rebuilt_versions``
        given on the package wins over the repository's.
        """
        p = self.package
        if p.repository is None:
            return ResolvedPackage(type=p.type, url=p.url, sha256_url=p.sha256_url, local_dir=p.local_dir,
                                   sha256=p.sha256, username=p.username, password_env=p.password_env,
                                   token_env=p.token_env, rebuilt_versions=p.rebuilt_versions)
        repos = config.repositories if config is not None else {}
        repo = repos.get(p.repository)
        if repo is None:
            known = ", ".join(sorted(repos)) or "none are defined"
            raise ConfigError(f"unknown repository {p.repository!r}; known repositories: {known}",
                              field="package.repository")
        access: _RepositoryAccess = p if p.has_credentials else repo
        rebuilt = p.rebuilt_versions if "rebuilt_versions" in p.model_fields_set else repo.rebuilt_versions
        return ResolvedPackage(type=p.type, url=repo.url, sha256_url=repo.sha256_url,
                               local_dir=repo.local_dir, sha256=p.sha256, repository=p.repository,
                               username=getattr(access, "username", None),
                               password_env=getattr(access, "password_env", None),
                               token_env=getattr(access, "token_env", None), rebuilt_versions=rebuilt)


@dataclass(frozen=True)
class _Source:
    file: str
    lines: dict[Path_, int]


@dataclass(frozen=True)
class _Problem:
    path: Path_
    message: str
    line: int | None = None  # when the path alone does not tell (a duplicate key)


class GrayliftConfig(Section):
    """The whole config file. Build it with :func:`load_config`."""

    state: str | None = None
    ssh: SshConfig = Field(default_factory=SshConfig)
    repositories: dict[PlainName, RepositoryConfig] = Field(default_factory=dict)
    apps: dict[PlainName, AppConfig] = Field(default_factory=dict)

    _raw_apps: dict[str, Any] = PrivateAttr(default_factory=dict)
    _source: _Source | None = PrivateAttr(default=None)
    _base_dir: Path | None = PrivateAttr(default=None)

    @field_validator("state", mode="before")
    @classmethod
    def _state_is_url(cls, value: Any) -> Any:
        if value is not None and (not isinstance(value, str) or not re.match(r"^[A-Za-z][\w+.-]*://", value)):
            # The value is not echoed: a database URL may hold a password.
            raise PydanticCustomError(
                "state_url", "must be a SQLAlchemy URL such as sqlite:////var/lib/graylift/state.db or "
                "postgresql+psycopg://graylift@db.example/graylift")
        if value is not None and _has_password(value):
            raise PydanticCustomError(
                "state_password", "a password in the state URL ends up in logs; put the whole URL in the "
                "GRAYLIFT_DB environment variable instead, or the password in PGPASSWORD or ~/.pgpass")
        return value

    @model_validator(mode="wrap")
    @classmethod
    def _keep_raw_apps(cls, data: Any, handler: Callable[[Any], GrayliftConfig],
                       info: ValidationInfo) -> GrayliftConfig:
        model = handler(data)
        raw = data.get("apps") if isinstance(data, dict) else None
        if isinstance(raw, dict):
            model._raw_apps = copy.deepcopy(raw)
        else:  # built from objects: fall back to their JSON form
            model._raw_apps = {name: app.model_dump(mode="json") for name, app in model.apps.items()}
        base = (info.context or {}).get("base_dir")
        model._base_dir = Path(base) if base is not None else None
        return model

    @model_validator(mode="after")
    def _references_exist(self) -> GrayliftConfig:
        for name, app in self.apps.items():
            ref = app.package.repository
            if ref is not None and ref not in self.repositories:
                error = _unknown_repository(ref, self.repositories)
                raise PydanticCustomError("unknown_repository", f"apps.{name}.package.repository: {error}")
        return self

    def app_for_env(self, app: str, env: str) -> AppConfig:
        """The app's sections deep-merged with ``envs[env]`` (an env without overrides gets the base)."""
        source = self._source
        if app not in self.apps:
            known = ", ".join(sorted(self.apps)) or "none are defined"
            raise ConfigError(f"unknown app {app!r}; known apps: {known}",
                              file=source.file if source else None, field="apps")
        if not is_plain_name(env):
            raise ConfigError(f"environment must be a plain name (letters, digits, . _ + -), got {env!r}")
        merged, origin = _merge_env(self._raw_apps[app], ("apps", app), env)
        try:
            return AppConfig.model_validate(merged, context=self._context())
        except ValidationError as exc:
            problems = _problems(exc, merged, origin, AppConfig)
            raise _config_error(problems, source) from None

    def state_url(self, config_path: Path) -> str:
        """The state database URL: $GRAYLIFT_DB, else ``state``, else sqlite under ~/.graylift.

        A relative sqlite path is relative to the config file's directory.
        """
        from_env = os.environ.get(STATE_ENV_VAR)
        if from_env:
            return from_env
        if self.state is None:
            return f"sqlite:///{DEFAULT_STATE_DB.expanduser()}"
        match = re.match(r"^(sqlite(?:\+\w+)?):///([^?]*)(\?.*)?$", self.state)
        if not match:
            return self.state
        scheme, db_path, query = match.group(1), match.group(2), match.group(3) or ""
        if db_path in ("", ":memory:") or db_path.startswith("/"):
            return self.state
        path = Path(db_path).expanduser()
        if not path.is_absolute():
            path = Path(config_path).parent.absolute() / path
        return f"{scheme}:///{path}{query}"

    def _context(self) -> dict[str, Any]:
        return {"base_dir": self._base_dir, "repositories": set(self.repositories),
                "local_repositories": {n for n, r in self.repositories.items() if r.local_dir is not None}}


# --------------------------------------------------------------------------------------------- loading


def example_config_text() -> str:
    """The annotated example config that `graylift init` writes."""
    return resources.files("graylift").joinpath("example_config.yaml").read_text(encoding="utf-8")


def load_config(path: Path) -> GrayliftConfig:
    """Read and validate a graylift.yaml. Every problem becomes one ConfigError (file, line, field)."""
    file = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("config file not found; run `graylift init` to write an annotated example",
                          file=file) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the config file: {exc}", file=file) from None
    data, lines, duplicates = _parse_yaml(text, file)
    source = _Source(file, lines)
    if data is None:
        raise ConfigError("the config file is empty; run `graylift init` for an annotated example", file=file)
    if not isinstance(data, dict):
        raise ConfigError(f"the config file must be a mapping of sections (state, ssh, repositories, apps), "
                          f"got {_show(data)}", file=file, line=1)
    context: dict[str, Any] = {"base_dir": Path(path).parent.absolute()}
    repos = data.get("repositories")
    context["repositories"] = set(repos) if isinstance(repos, dict) else set()
    context["local_repositories"] = {name for name, repo in (repos.items() if isinstance(repos, dict) else ())
                                     if isinstance(repo, dict) and repo.get("local_dir") is not None}
    problems = list(duplicates)
    config: GrayliftConfig | None = None
    try:
        config = GrayliftConfig.model_validate(data, context=context)
    except ValidationError as exc:
        problems += _problems(exc, data, lambda p: p, GrayliftConfig)
    problems += _env_problems(data, context, {(p.path, p.message) for p in problems})
    if problems or config is None:
        raise _config_error(problems, source)
    config._source = source
    return config


def _env_problems(data: dict[str, Any], context: dict[str, Any],
                  known: set[tuple[Path_, str]]) -> list[_Problem]:
    """Validate every app merged with each of its env overrides; ``known`` problems are not repeated."""
    problems: list[_Problem] = []
    apps = data.get("apps")
    if not isinstance(apps, dict):
        return problems
    for name, raw_app in apps.items():
        envs = raw_app.get("envs") if isinstance(raw_app, dict) else None
        if not isinstance(envs, dict):
            continue
        for env, override in envs.items():
            if not isinstance(override, dict):
                continue  # reported by the base validation
            if "envs" in override:
                problems.append(_Problem(("apps", name, "envs", env, "envs"),
                                         "an env override cannot contain envs"))
                continue
            merged, origin = _merge_env(raw_app, ("apps", name), env)
            try:
                AppConfig.model_validate(merged, context=context)
            except ValidationError as exc:
                for problem in _problems(exc, merged, lambda p: p, AppConfig):
                    if (("apps", name, *problem.path), problem.message) not in known:
                        problems.append(_Problem(origin(problem.path), problem.message))
    return problems


def _merge_env(raw_app: Any, app_path: Path_, env: str) -> tuple[Any, Callable[[Path_], Path_]]:
    """The app's raw data deep-merged with envs[env], and a map from merged path to the path in the file."""
    if not isinstance(raw_app, dict):
        return raw_app, lambda p: app_path + p
    base = {k: v for k, v in raw_app.items() if k != "envs"}
    envs = raw_app.get("envs")
    override = envs.get(env) if isinstance(envs, dict) else None
    if not isinstance(override, dict):
        return copy.deepcopy(base), lambda p: app_path + p
    override_path = (*app_path, "envs", env)
    origins: dict[Path_, Path_] = {}
    touched: dict[Path_, Path_] = {}
    merged = _deep_merge(base, override, (), override_path, origins, touched)

    def origin(path: Path_) -> Path_:
        if path in touched:  # a problem of a section both the base and the override set
            return touched[path]
        for size in range(len(path), -1, -1):
            if path[:size] in origins:
                return origins[path[:size]] + path[size:]
        return app_path + path

    return merged, origin


def _deep_merge(base: dict[str, Any], override: dict[str, Any], at: Path_, override_path: Path_,
                origins: dict[Path_, Path_], touched: dict[Path_, Path_]) -> dict[str, Any]:
    """Dicts merge key by key; anything else in the override replaces. Records where values came from."""
    merged = copy.deepcopy(base)
    for key, value in override.items():
        here = (*at, key)
        if isinstance(value, dict) and isinstance(merged.get(key), dict) and not _retyped(merged[key], value):
            touched[here] = override_path + here
            merged[key] = _deep_merge(merged[key], value, here, override_path, origins, touched)
        else:
            merged[key] = copy.deepcopy(value)
            origins[here] = override_path + here
    return merged


def _retyped(base: dict[str, Any], override: dict[str, Any]) -> bool:
    """An override that switches a typed section to another ``type`` replaces it instead of merging."""
    return "type" in override and override["type"] != base.get("type")


def _parse_yaml(text: str, file: str) -> tuple[Any, dict[Path_, int], list[_Problem]]:
    """The data, a map from key path to line (1-based), and duplicate-key problems."""
    try:
        doc = yamldoc.load(text)
    except yamldoc.YamlError as exc:
        raise ConfigError(f"invalid YAML: {exc.message}", file=file, line=exc.line) from None
    duplicates = [_Problem(d.path, f"duplicate key {_show(d.key)} (first given on line {d.first_line})", d.line)
                  for d in doc.duplicates]
    return doc.data, doc.lines, duplicates


# --------------------------------------------------------------------------------------------- errors


def _problems(exc: ValidationError, data: Any, origin: Callable[[Path_], Path_],
              root: type[BaseModel]) -> list[_Problem]:
    problems = []
    for error in exc.errors(include_url=False):
        loc = tuple(error["loc"])
        data_path = _data_path(data, loc)
        message = _message(error, error.get("ctx") or {}, root, loc)
        if error["type"] == "union_tag_invalid":
            data_path = (*data_path, "type")
        problems.append(_Problem(origin(data_path), message))
    return problems


def _data_path(data: Any, loc: Path_) -> Path_:
    """Pydantic's loc as the file spells it: without union tags and dict-key markers."""
    path: list[str | int] = []
    current = data
    for part in loc:
        if part == "[key]":
            continue
        in_dict = isinstance(current, dict) and part in current
        if in_dict or (isinstance(current, list) and isinstance(part, int) and 0 <= part < len(current)):
            current = current[part]
        elif isinstance(current, dict) and current.get("type") == part:
            continue  # the discriminated union's tag
        else:
            current = None
        path.append(part)
    return tuple(path)


def _message(error: Any, ctx: Mapping[str, Any], root: type[BaseModel], loc: Path_) -> str:
    kind, value = error["type"], error.get("input")
    if kind == "extra_forbidden":
        allowed = _allowed_keys(root, loc[:-1])
        suffix = f"; allowed keys: {', '.join(allowed)}" if allowed else ""
        return f"unknown key {_show(loc[-1])}{suffix}"
    if kind == "missing":
        return "is required"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return f"must be a mapping (key: value), got {_show(value)}"
    if kind == "list_type":
        return f"must be a list, got {_show(value)}"
    if kind == "string_type":
        return f"must be a text string, got {_show(value)}"
    if kind == "literal_error" and loc and loc[-1] == "type":
        known = str(ctx.get("expected", "")).replace("'", "").replace(" or ", ", ")
        return f"unknown type {_show(value)}; known types: {known}"
    if kind in ("enum", "literal_error"):
        expected = str(ctx.get("expected", "")).replace("'", "").replace(" or ", ", ")
        return f"must be one of: {expected}; got {_show(value)}"
    if kind == "union_tag_invalid":
        tags = str(ctx.get("expected_tags", "")).replace("'", "")
        return f"unknown type {_show(ctx.get('tag'))}; known types: {tags}"
    if kind == "union_tag_not_found":
        tags = ", ".join(_union_tags(root, loc))
        return f"needs a `type`: one of {tags}" if tags else "needs a `type`"
    if kind == "value_error":
        return str(ctx.get("error", error["msg"]))
    message: str = error["msg"]
    return message[:1].lower() + message[1:]


def _unwrap(annotation: Any) -> list[Any]:
    """The concrete types inside Annotated / Optional / Union."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _unwrap(get_args(annotation)[0])
    if origin is Union or type(annotation).__name__ == "UnionType":
        return [t for arg in get_args(annotation) for t in _unwrap(arg)]
    return [annotation]


def _types_at(root: type[BaseModel], loc: Path_) -> list[Any]:
    """The declared types at a pydantic loc (walking models, dicts, lists and union tags)."""
    current: list[Any] = [root]
    for part in loc:
        following: list[Any] = []
        for tp in current:
            origin = get_origin(tp)
            if isinstance(tp, type) and issubclass(tp, BaseModel):
                field = tp.model_fields.get(str(part))
                if field is not None:
                    following += _unwrap(field.annotation)
                    continue
                type_field = tp.model_fields.get("type")
                if type_field is not None and part in get_args(type_field.annotation):
                    following.append(tp)  # a union tag selects this member
            elif origin is dict and part != "[key]":
                following += _unwrap(get_args(tp)[1])
            elif origin is list and isinstance(part, int):
                following += _unwrap(get_args(tp)[0])
            elif part == "[key]":
                following.append(tp)
        current = following
    return current


def _allowed_keys(root: type[BaseModel], loc: Path_) -> list[str]:
    for tp in _types_at(root, loc):
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            return list(tp.model_fields)
    return []


def _union_tags(root: type[BaseModel], loc: Path_) -> list[str]:
    """The ``type`` tags a discriminated union at ``loc`` (a list item or a single section) accepts."""
    tags: list[str] = []
    for member in _types_at(root, loc):
        if isinstance(member, type) and issubclass(member, BaseModel):
            type_field = member.model_fields.get("type")
            if type_field is not None:
                tags += [str(a) for a in get_args(type_field.annotation) if str(a) not in tags]
    return tags


def _dotted(path: Path_) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _config_error(problems: list[_Problem], source: _Source | None) -> ConfigError:
    """One ConfigError for all problems: one line each, sorted by line."""
    file = source.file if source else None
    unique: dict[tuple[Path_, str], tuple[int | None, str, str]] = {}
    for problem in problems:
        line = problem.line or _line_of(problem.path, source)
        unique.setdefault((problem.path, problem.message), (line, _dotted(problem.path), problem.message))
    located = sorted(unique.values(), key=lambda item: (item[0] or 0, item[1]))
    if len(located) == 1:
        line, field, message = located[0]
        return ConfigError(message, file=file, line=line, field=field or None)
    rendered = [str(ConfigError(message, file=file, line=line, field=field or None))
                for line, field, message in located]
    error = ConfigError(f"{len(located)} problems in the config:\n" + "\n".join(f"  {r}" for r in rendered))
    error.file, error.line, error.field = file, located[0][0], located[0][1] or None
    return error


def _line_of(path: Path_, source: _Source | None) -> int | None:
    if source is None:
        return None
    for size in range(len(path), -1, -1):
        if path[:size] in source.lines:
            return source.lines[path[:size]]
    return None
