"""What the server shows before a release: the apps and environments the config names, and the versions a
repository can list (a local directory; an HTTP repository with ``versions_url``; else the console takes a
typed version)."""

from __future__ import annotations

from pathlib import Path

from graylift.service.base import ServiceBase


def configured_app_envs(service: ServiceBase) -> dict[str, list[str]]:
    """app -> the environments its config overrides (an app with none is released to any env)."""
    return {name: sorted(app.envs) for name, app in sorted(service.config.apps.items())}


def listed_versions(service: ServiceBase, app: str, env: str, limit: int = 50) -> list[str] | None:
    """Versions of ``app`` in its repository, newest first by file time, or None if it cannot list them."""
    package = service.config.app_for_env(app, env).resolved_package(service.config)
    if package.versions_url is not None:
        from graylift.adapters.artifact_versions import list_versions
        from graylift.adapters.artifacts import auth_from_config
        from graylift.core.template import render

        url = render(package.versions_url, {"app": app, "ext": package.type.value})
        return list_versions(url, app, package.type.value, auth_from_config(package))[:limit]
    if package.local_dir is None:
        return None
    suffix = f".{package.type.value}"
    directory = Path(package.local_dir)
    if not directory.is_dir():
        return []
    files = sorted((p for p in directory.glob(f"{app}-*{suffix}") if p.is_file()),
                   key=lambda p: p.stat().st_mtime, reverse=True)
    return [p.name[len(app) + 1: -len(suffix)] for p in files[:limit]]
