"""What every part of the service shares: one config file, one state database, the fleet builder."""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from graylift.core.model import Host
from graylift.errors import ConfigError
from graylift.state_location import DEFAULT_STATE_DB, STATE_ENV_VAR, default_state_db, resolve_state, state_line
from graylift.store import ReleaseRecord, Store

if TYPE_CHECKING:
    from graylift.config import GrayliftConfig
    from graylift.engine import Engine
    from graylift.ports import Clock, Fleet
    from graylift.runtime import HostRead

DEFAULT_CONFIG = Path("graylift.yaml")

FleetBuilder = Callable[[dict[str, Any], str, str, Sequence[Host]], "Fleet"]
"""(config snapshot, app, env, hosts) -> the fleet's adapters; the real one is :class:`LiveFleet`."""


def config_path_from_env(path: Path | None) -> Path:
    if path is not None:
        return path
    return Path(os.environ.get("GRAYLIFT_CONFIG", str(DEFAULT_CONFIG)))


class ServiceBase:
    """One config file + one state database."""

    def __init__(self, config_path: Path | None = None, *, db_url: str | None = None,
                 fleet: FleetBuilder | None = None, config: GrayliftConfig | None = None, store: Store | None = None,
                 clock: Clock | None = None) -> None:
        """``fleet``, ``config``, ``store`` and ``clock`` are for tests and the simulation; by default the config
        comes from ``config_path``, the store from its ``state`` (or GRAYLIFT_DB), the clock is the system's."""
        self.config_path = config_path_from_env(config_path)
        self._config = config
        self._store = store
        self._db_url = db_url
        self._fleet_builder = fleet
        self._connectors: dict[str, Any] | None = None  # while sharing_connections(): SSH settings -> connector
        self._reads: dict[int, dict[str, HostRead]] | None = None  # while sharing_connections(): a preflight's reads
        self.clock = clock
        self.config_problem: str | None = None
        """Why the config file could not be used when only the state database was needed (emergency
        commands work from a release's own config snapshot), else None."""
        self.on_new_state: Callable[[str], None] | None = None
        """Told the path when a SQLite state database is created new (a wrong path is then not silent)."""

    @property
    def config(self) -> GrayliftConfig:
        if self._config is None:
            from graylift.config import load_config

            self._config = load_config(self.config_path)
        return self._config

    @property
    def _fleet(self) -> FleetBuilder:
        if self._fleet_builder is None:
            from graylift.wiring import LiveFleet

            def live(snap: dict[str, Any], app: str, env: str, hosts: Sequence[Host]) -> Fleet:
                return LiveFleet(snap, app, env, hosts, connectors=self._connectors)

            self._fleet_builder = live
        return self._fleet_builder

    @contextlib.asynccontextmanager
    async def sharing_connections(self) -> AsyncIterator[None]:
        """Within it (one event loop), the fleets this service builds share one SSH connector per SSH
        settings: a release's preflight and its drive open each host's connection once, not twice (a
        handshake costs the controller more CPU than a dozen commands). Closed when it ends. And a release
        started within it hands what its preflight read of each host to its drive here: a host whose turn
        comes soon enough is not read again by its pre-check (``strategy.precheck_ahead``)."""
        self._connectors, self._reads = {}, {}
        try:
            yield
        finally:
            self._reads = None
            connectors, self._connectors = self._connectors, None
            for connector in connectors.values():
                await connector.close()

    def hand_reads_to_drives(self) -> None:
        """From now on, as within :meth:`sharing_connections`: what a release's preflight read of each host goes
        to this service's drive of it (the simulation starts and drives as `graylift release --wait` does, each
        on an event loop of its own)."""
        self._reads = {}

    @property
    def db_url(self) -> str:
        """$GRAYLIFT_DB, else the config's ``state`` (read without validating the rest of the config), else the
        default: status, pause, abort, promote, resume and a rollback of a recorded release work from the
        database alone, with a broken config or none."""
        explicit = self._db_url or os.environ.get(STATE_ENV_VAR)
        if explicit:
            return explicit
        if self._config is not None:
            return self._config.state_url(self.config_path)
        state = state_line(self.config_path)
        if state is not None:
            from graylift.redact import has_password

            if has_password(state):  # as the config's own validation says it
                raise ConfigError("a password in the state URL ends up in logs; put the whole URL in the "
                                  "GRAYLIFT_DB environment variable instead, or the password in PGPASSWORD or "
                                  "~/.pgpass", file=str(self.config_path), field="state")
        return resolve_state(state, self.config_path)

    @property
    def store(self) -> Store:
        if self._store is None:
            url = self.db_url
            new = _new_sqlite_file(url)
            self._store = Store.open(url, create_dir=self._may_create_state_dir(url))
            if new and self.on_new_state is not None:
                self.on_new_state(new)
        return self._store

    @property
    def state_location(self) -> str:
        """Where the state lives, as ``status`` shows it (a password is never shown)."""
        return self.store.url.render_as_string(hide_password=True)

    def known_apps(self) -> dict[str, set[str]]:
        """app -> envs, from the config (when it loads) and the state database (hosts and releases)."""
        known = self.store.app_envs()
        try:
            for name, app in self.config.apps.items():
                known.setdefault(name, set()).update(app.envs)
        except ConfigError as exc:
            self.config_problem = str(exc)
        return known

    def check_app(self, app: str, env: str | None = None) -> None:
        """An app (and env) that neither the config nor the database knows is a typo: say so, with the names
        that exist, instead of answering with an empty list."""
        known = self.known_apps()
        if app not in known:
            names = ", ".join(sorted(known)) or "none yet (the config defines none and the database is empty)"
            raise ConfigError(f"unknown app {app!r}; known apps: {names}")
        envs = known[app]
        if env is not None and envs and env not in envs:
            raise ConfigError(f"unknown env {env!r} for {app}; known envs: {', '.join(sorted(envs))}")

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
        own = [DEFAULT_STATE_DB.expanduser().absolute().parent, default_state_db().parent,
               self.config_path.absolute().parent]
        return any(parent == d or d in parent.parents for d in own)

    def close(self) -> None:
        if self._store is not None:
            self._store.close()

    def engine(self) -> Engine:
        from graylift.engine import Engine

        store = self.store

        async def factory(rec: ReleaseRecord) -> Fleet:
            return self._fleet(rec.config, rec.app, rec.env, [r.host_spec for r in store.host_runs(rec.id)])

        return Engine(store, factory, clock=self.clock, reads=self._reads)


def _new_sqlite_file(url: str) -> str | None:
    """The path of a SQLite database file that does not exist yet (opening will create it), else None."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return None
    database = parsed.database or ""
    if parsed.get_backend_name() != "sqlite" or database in ("", ":memory:") or database.startswith("file:"):
        return None
    path = Path(database).expanduser()
    return None if path.exists() else str(path)
