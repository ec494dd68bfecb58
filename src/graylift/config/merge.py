"""An app's ``envs.<env>`` override deep-merged over its sections, remembering where each value came from.

Mappings merge key by key; anything else in the override replaces (so does a section whose ``type`` the
override changes). The origin map sends a problem found in the merged data back to the line of the file
that set the value: the override's, or the app's own.

>>> merged, origin = merge_env({"deploy": {"dir": "/srv/a"}, "envs": {"dev": {"deploy": {"dir": "/tmp/a"}}}},
...                            ("apps", "a"), "dev")
>>> merged, origin(("deploy", "dir"))
({'deploy': {'dir': '/tmp/a'}}, ('apps', 'a', 'envs', 'dev', 'deploy', 'dir'))
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

Path_ = tuple[str | int, ...]


def merge_env(raw_app: Any, app_path: Path_, env: str) -> tuple[Any, Callable[[Path_], Path_]]:
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
    merged = deep_merge(base, override, (), override_path, origins, touched)

    def origin(path: Path_) -> Path_:
        if path in touched:  # a problem of a section both the base and the override set
            return touched[path]
        for size in range(len(path), -1, -1):
            if path[:size] in origins:
                return origins[path[:size]] + path[size:]
        return app_path + path

    return merged, origin


def deep_merge(base: dict[str, Any], override: dict[str, Any], at: Path_, override_path: Path_,
                origins: dict[Path_, Path_], touched: dict[Path_, Path_]) -> dict[str, Any]:
    """Dicts merge key by key; anything else in the override replaces. Records where values came from."""
    merged = copy.deepcopy(base)
    for key, value in override.items():
        here = (*at, key)
        if isinstance(value, dict) and isinstance(merged.get(key), dict) and not _retyped(merged[key], value):
            touched[here] = override_path + here
            merged[key] = deep_merge(merged[key], value, here, override_path, origins, touched)
        else:
            merged[key] = copy.deepcopy(value)
            origins[here] = override_path + here
    return merged


def _retyped(base: dict[str, Any], override: dict[str, Any]) -> bool:
    """An override that switches a typed section to another ``type`` replaces it instead of merging."""
    return "type" in override and override["type"] != base.get("type")
