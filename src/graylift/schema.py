"""The vocabulary of graylift.yaml: the base of every section and the value types its fields use.

The config package (``graylift.config``) and every backend module (its ``type: Literal[...]`` model) build
their sections from these, so a port, a number of seconds or a URL is checked, and its problem worded, the
same way everywhere. This module sits apart from ``graylift.config`` because that package assembles its
``traffic`` / ``monitoring`` / ``inventory`` unions from the backend modules, which import this one.

Every check raises a ``PydanticCustomError`` whose message reads after the field's name in a ConfigError
(``apps.shop.traffic[0].port: must be a port number from 1 to 65535, got 0``); a value is echoed with
:func:`show` (short, a URL's credentials masked), and a field that may hold a secret is never echoed.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, ValidationInfo, model_validator
from pydantic_core import PydanticCustomError

from graylift.core import template as templates
from graylift.core.model import is_plain_name
from graylift.core.template import HOST_PLACEHOLDERS
from graylift.redact import has_userinfo, mask_url

# The placeholders of the app's commands (start, stop, drain, health): graylift fills them per host.
COMMAND_PLACEHOLDERS = frozenset({"app", "version", "deploy_dir", "current", "release_dir", "host", "address"})
URL_CREDENTIALS = "credentials in a URL end up in logs and argv; use username + password_env or token_env"


def show(value: Any) -> str:
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


def fail(kind: str, message: str, value: Any) -> PydanticCustomError:
    """The problem ``message`` (e.g. "must be a port number"), followed by the value given."""
    return PydanticCustomError(kind, message + ", got {got}", {"got": show(value)})


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


def placeholders(allowed: Collection[str], *, shell: bool = False) -> AfterValidator:
    """A template field that may use only the ``allowed`` placeholders (``shell``: outside quotes)."""
    def check(value: str) -> str:
        problem = templates.problem(value, allowed, shell=shell)
        if problem:
            raise PydanticCustomError("template", "{problem}", {"problem": problem})
        return value

    return AfterValidator(check)


def uses_placeholder(required: frozenset[str], words: str) -> AfterValidator:
    """A template field that must use one of ``required`` (``words`` says which, and why)."""
    def check(value: str) -> str:
        if not templates.names(value) & required:
            raise fail("template", f"must use {words}", value)
        return value

    return AfterValidator(check)


def exactly_one(message: str, *values: object) -> None:
    """For a model validator: ValueError(``message``) unless exactly one of ``values`` is given (not None)."""
    if sum(value is not None for value in values) != 1:
        raise ValueError(message)


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def int_at_least(minimum: int, words: str) -> BeforeValidator:
    def check(value: Any) -> Any:
        if not is_int(value) or value < minimum:
            raise fail("whole_number", f"must be {words}", value)
        return value

    return BeforeValidator(check)


def _seconds(*, positive: bool) -> BeforeValidator:
    def check(value: Any) -> Any:
        if not is_number(value) or value < 0 or (positive and value == 0):
            words = "a positive number of seconds" if positive else "a number of seconds >= 0"
            raise fail("seconds", f"must be {words}", value)
        return float(value)

    return BeforeValidator(check)


_SIZE = re.compile(r"\s*(\d+)\s*(B|KiB|MiB|GiB)?\s*")
_SIZE_UNITS = {None: 1, "B": 1, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30}


def _check_size(value: Any) -> Any:
    """A positive size in bytes: a whole number, or one with a unit (``64MiB``, ``512 KiB``, ``1GiB``)."""
    match = _SIZE.fullmatch(value) if isinstance(value, str) else None
    if match:
        value = int(match[1]) * _SIZE_UNITS[match[2]]
    if not is_int(value) or value < 1:
        raise fail("size", "must be a positive size: bytes, or a number with KiB, MiB or GiB (64MiB)", value)
    return value


def _check_port(value: Any) -> Any:
    if not is_int(value) or not 1 <= value <= 65535:
        raise fail("port", "must be a port number from 1 to 65535", value)
    return value


def _check_bool(value: Any) -> Any:
    if not isinstance(value, bool):
        raise fail("bool", "must be true or false", value)
    return value


def check_text(value: Any) -> Any:
    if not isinstance(value, str) or not value.strip():
        raise fail("text", "must be a non-empty text string", value)
    return value


def _check_plain(value: str) -> str:
    if not is_plain_name(value):
        raise PydanticCustomError(
            "plain_name", "must be a plain name (letters, digits, . _ + -; no '..'), got {got}",
            {"got": show(value)})
    return value


def no_userinfo(value: str, info: ValidationInfo) -> str:
    if has_userinfo(value) and not from_snapshot(info):
        raise PydanticCustomError("url_credentials", URL_CREDENTIALS)
    return value


def from_snapshot(info: ValidationInfo) -> bool:
    """Validating a release's stored snapshot (:meth:`AppConfig.from_snapshot`), not a config file.

    A release keeps the config it started with, so rules added later (no credentials in URLs, a health
    check or ``none: true``) are not applied to it: a release started before an upgrade can still be resumed.
    """
    return bool((info.context or {}).get("snapshot"))


def _check_http_url(value: str) -> str:
    if not re.match(r"^https?://[^/\s]+", value):
        raise fail("url", "must be an http:// or https:// URL", value)
    return value


def _path_in_context(value: Any, info: ValidationInfo) -> Any:
    """Expand ``~``; a relative path is relative to the config file's directory (context ``base_dir``)."""
    if not isinstance(value, Path):
        check_text(value)
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


def _check_abs_path(value: str) -> str:
    path = PurePosixPath(value)
    if not path.is_absolute() or ".." in path.parts:
        raise fail("abs_path", "must be an absolute path without '..'", value)
    return str(path)


def _check_zk_root(value: str) -> str:
    if not value.startswith("/") or ".." in value.split("/"):
        raise fail("zk_root", "must be an absolute ZooKeeper path like /dubbo", value)
    return value.rstrip("/") or "/"


def non_empty(value: Any) -> Any:
    if isinstance(value, list) and not value:
        raise PydanticCustomError("non_empty", "must list at least one item")
    return value


Text = Annotated[str, BeforeValidator(check_text)]
PlainName = Annotated[str, BeforeValidator(check_text), AfterValidator(_check_plain)]
PositiveInt = Annotated[int, int_at_least(1, "a positive whole number")]
NonNegativeInt = Annotated[int, int_at_least(0, "a whole number >= 0")]
Port = Annotated[int, BeforeValidator(_check_port)]
Size = Annotated[int, BeforeValidator(_check_size)]
Seconds = Annotated[float, _seconds(positive=False)]
PositiveSeconds = Annotated[float, _seconds(positive=True)]
Flag = Annotated[bool, BeforeValidator(_check_bool)]
HttpUrl = Annotated[str, BeforeValidator(check_text), AfterValidator(no_userinfo), AfterValidator(_check_http_url)]
LocalPath = Annotated[Path, BeforeValidator(_path_in_context)]
AbsPath = Annotated[str, BeforeValidator(check_text), AfterValidator(_check_abs_path)]
ZkPath = Annotated[str, BeforeValidator(check_text), AfterValidator(_check_zk_root)]
CommandTemplate = Annotated[str, BeforeValidator(check_text), placeholders(COMMAND_PLACEHOLDERS, shell=True)]
HostTemplate = Annotated[str, BeforeValidator(check_text), placeholders(HOST_PLACEHOLDERS)]
# The name of an environment variable holding a secret: the config (and every release's snapshot of it)
# never holds the secret itself.
EnvName = Annotated[str, BeforeValidator(check_text), AfterValidator(_check_env_name)]


class Section(BaseModel):
    """Base of every config section: unknown keys are errors; instances are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class UserPassword(Section):
    """``username`` + ``password_env`` (the variable holding the password), both or neither.

    Each subclass declares the two fields where they belong in its own list of keys.
    """

    if TYPE_CHECKING:
        username: str | None
        password_env: str | None

    @model_validator(mode="after")
    def _pair(self) -> UserPassword:
        if (self.username is None) != (self.password_env is None):
            raise ValueError("give both username and password_env (the environment variable holding the "
                             "password), or neither")
        return self
