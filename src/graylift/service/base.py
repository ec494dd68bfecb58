"""What every part of the service shares: one config file, one state database, the fleet builder."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from graylift.config import DEFAULT_STATE_DB, STATE_ENV_VAR, GrayliftConfig, load_config
from graylift.core.model import Host
from graylift.engine import Engine
from graylift.ports import Clock, Fleet
from graylift.store import ReleaseRecord, Store
from graylift.wiring import LiveFleet

DEFAULT_CONFIG = Path("graylift.yaml")

FleetBuilder = Callable[[dict[str, Any], str, str, Sequence[Host]], Fleet]
"""(config snapshot, app, env, hosts) -> the fleet's adapters; the real one is :class:`LiveFleet`."""


def config_path_from_env(path: Path | None) -> Path:
    if path is not None:
        return path
    return Path(os.environ.get("GRAYLIFT_CONFIG", str(DEFAULT_CONFIG)))


class ServiceBase:
    """One config file + one state database."""

    def __init__(self, config_path: Path | None = None, *, db_url: str | None = None,
                 fleet: FleetBuilder = LiveFleet, config: GrayliftConfig | None = None, store: Store | None = None,
                 clock: Clock | None = None) -> None:
        """``fleet``, ``config``, ``store`` and ``clock`` are for tests and the simulation; by default the config
        comes from ``config_path``, the store from its ``state`` (or GRAYLIFT_DB), the clock is the system's."""
        self.config_path = config_path_from_env(config_path)
        self._config = config
        self._store = store
        self._db_url = db_url
        self._fleet = fleet
        self.clock = clock

    @property
    def config(self) -> GrayliftConfig:
        if self._config is None:
            self._config = load_config(self.config_path)
        return self._config

    @property
    def db_url(self) -> str:
        return self._db_url or os.environ.get(STATE_ENV_VAR) or self.config.state_url(self.config_path)

    @property
    def store(self) -> Store:
        if self._store is None:
            url = self.db_url
            self._store = Store.open(url, create_dir=self._may_create_state_dir(url))
        return self._store

    def _may_create_state_dir(self, url: str) -> bool:
        """graylift creates the state database's directory only in its own default place or beside the
        config; anywhere else a missing directory is an error that names it (a typo must not be silent)."""
        try:
            database = make_url(url).database or ""
        except ArgumentError:
            return False
        if not database or database.startswith("file:") or database == ":memory:":
            return False
        parent = Path(database).expanduser().absolute().parent
        own = [DEFAULT_STATE_DB.expanduser().absolute().parent, self.config_path.absolute().parent]
        return any(parent == d or d in parent.parents for d in own)

    def close(self) -> None:
        if self._store is not None:
            self._store.close()

    def engine(self) -> Engine:
        store = self.store

        async def factory(rec: ReleaseRecord) -> Fleet:
            return self._fleet(rec.config, rec.app, rec.env, [r.host_spec for r in store.host_runs(rec.id)])

        return Engine(store, factory, clock=self.clock)
