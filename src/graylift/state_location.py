"""Where the state database lives: GRAYLIFT_DB, else the config's ``state:``, else one documented default.

Cheap to import (no config models, no SQLAlchemy): ``graylift status`` finds its database without validating
the whole config, and works when the config is broken (the release keeps its own config snapshot).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import yaml

DEFAULT_STATE_DB = Path("~/.graylift/state.db")
SHARED_STATE_DB = Path("/var/lib/graylift/state.db")
STATE_ENV_VAR = "GRAYLIFT_DB"


def default_state_db() -> Path:
    """Where the state lives when neither GRAYLIFT_DB nor ``state:`` says: a shared controller's
    ``/var/lib/graylift/state.db`` when that directory exists or when run as root (root and a deploy user then
    see the same releases, given the directory's group), else ``~/.graylift/state.db``."""
    if SHARED_STATE_DB.parent.is_dir() or os.geteuid() == 0:
        return SHARED_STATE_DB
    return DEFAULT_STATE_DB.expanduser()


def resolve_state(state: str | None, config_path: Path) -> str:
    """The URL of a ``state:`` value (None: the default); a relative sqlite path is the config file's."""
    if state is None:
        return f"sqlite:///{default_state_db()}"
    match = re.match(r"^(sqlite(?:\+\w+)?):///([^?]*)(\?.*)?$", state)
    if not match:
        return state
    scheme, db_path, query = match.group(1), match.group(2), match.group(3) or ""
    if db_path in ("", ":memory:") or db_path.startswith("/"):
        return state
    path = Path(db_path).expanduser()
    if not path.is_absolute():
        path = Path(config_path).parent.absolute() / path
    return f"{scheme}:///{path}{query}"


def state_line(config_path: Path) -> str | None:
    """The ``state:`` value of a config file, read without validating the rest (which may be broken): from
    the YAML when it parses, else from a top-level ``state:`` line; None when there is none (or no file)."""
    try:
        text = config_path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    try:
        data = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError:
        found = re.search(r"""^state:[ \t]*["']?([^"'\s#]+)""", text, re.MULTILINE)
        return found.group(1) if found else None
    value = data.get("state") if isinstance(data, dict) else None
    return value if isinstance(value, str) else None


def state_url(config_path: Path) -> str:
    """$GRAYLIFT_DB, else the config file's ``state:`` (relative to the file), else :func:`default_state_db`."""
    return os.environ.get(STATE_ENV_VAR) or resolve_state(state_line(config_path), config_path)


__all__ = ["DEFAULT_STATE_DB", "SHARED_STATE_DB", "STATE_ENV_VAR", "default_state_db", "resolve_state",
           "state_line", "state_url"]
