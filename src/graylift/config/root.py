"""The whole config file: the state database, SSH, the named repositories and every app.

Build it with :func:`graylift.config.load_config`; :meth:`GrayliftConfig.app_for_env` gives one app's
config for one environment (its ``envs`` override merged in, every problem located in the file).
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import Field, PrivateAttr, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

from graylift.adapters.transport.ssh import SshConfig
from graylift.config.app import AppConfig
from graylift.config.merge import merge_env
from graylift.config.package import RepositoryConfig, unknown_repository
from graylift.config.problems import Source, config_error, problems_of
from graylift.core.model import is_plain_name
from graylift.errors import ConfigError
from graylift.redact import has_password
from graylift.schema import PlainName, Section
from graylift.state_location import STATE_ENV_VAR, resolve_state


class GrayliftConfig(Section):
    """The whole config file. Build it with :func:`load_config`."""

    state: str | None = None
    ssh: SshConfig = Field(default_factory=SshConfig)
    repositories: dict[PlainName, RepositoryConfig] = Field(default_factory=dict)
    apps: dict[PlainName, AppConfig] = Field(default_factory=dict)

    _raw_apps: dict[str, Any] = PrivateAttr(default_factory=dict)
    _source: Source | None = PrivateAttr(default=None)
    _base_dir: Path | None = PrivateAttr(default=None)

    @field_validator("state", mode="before")
    @classmethod
    def _state_is_url(cls, value: Any) -> Any:
        if value is not None and (not isinstance(value, str) or not re.match(r"^[A-Za-z][\w+.-]*://", value)):
            # The value is not echoed: a database URL may hold a password.
            raise PydanticCustomError(
                "state_url", "must be a SQLAlchemy URL such as sqlite:////var/lib/graylift/state.db or "
                "postgresql+psycopg://graylift@db.example/graylift")
        if value is not None and has_password(value):
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
                error = unknown_repository(ref, self.repositories)
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
        merged, origin = merge_env(self._raw_apps[app], ("apps", app), env)
        try:
            return AppConfig.model_validate(merged, context=self._context())
        except ValidationError as exc:
            raise config_error(problems_of(exc, merged, origin, AppConfig), source) from None

    def state_url(self, config_path: Path) -> str:
        """The state database URL: $GRAYLIFT_DB, else ``state``, else :func:`default_state_db`.

        A relative sqlite path in ``state`` is relative to the config file's directory.
        """
        from_env = os.environ.get(STATE_ENV_VAR)
        if from_env:
            return from_env
        return resolve_state(self.state, config_path)

    def _context(self) -> dict[str, Any]:
        return {"base_dir": self._base_dir, "repositories": set(self.repositories),
                "local_repositories": {n for n, r in self.repositories.items() if r.local_dir is not None}}
