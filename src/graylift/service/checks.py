"""`graylift check`: more than the schema. Every app in every env validates; the files the config names exist
(SSH key, known_hosts, a repository's ``local_dir``); every ``*_env`` variable it names is set; the state database
opens; and each app/env's current host list can be released under the strategy (the < 50% rule).
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from graylift.errors import ConfigError, GrayliftError, PlanError
from graylift.service.base import ServiceBase

FILE_FIELDS = ("key", "known_hosts", "local_dir")


@dataclass
class AppCheck:
    name: str
    envs: list[str]
    traffic: int
    silencers: int
    hosts: dict[str, int] = field(default_factory=dict)
    """env -> hosts in the current list (an env with none yet is not planned)."""


@dataclass
class CheckReport:
    config: str
    state_db: str | None = None
    apps: list[AppCheck] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def check_config(service: ServiceBase) -> CheckReport:
    """Every check, every problem listed (none stops the others); the schema itself must load first."""
    cfg = service.config
    report = CheckReport(config=str(service.config_path))
    if not cfg.apps:
        report.problems.append(f"{service.config_path}: no app under `apps:`; a config must define at least one")
    report.problems += _missing(cfg.model_dump(), "")
    try:
        report.state_db = service.store.url.render_as_string(hide_password=True)
        known = service.store.app_envs()
    except GrayliftError as exc:
        report.problems.append(f"state database: {exc}")
        known = {}
    for name, app in cfg.apps.items():
        envs = sorted(set(app.envs) | known.get(name, set()))
        entry = AppCheck(name, sorted(app.envs), len(app.traffic), len(app.monitoring))
        report.apps.append(entry)
        for env in envs or []:
            try:
                merged = cfg.app_for_env(name, env)
            except ConfigError as exc:
                report.problems.append(str(exc))
                continue
            report.problems += _missing(merged.model_dump(), f"apps.{name}.envs.{env}.")
            if report.state_db is not None and env in known.get(name, set()):
                report.problems += _plan_problems(service, name, env, entry)
    report.problems = _unique(report.problems)
    return report


def _unique(problems: list[str]) -> list[str]:
    """One line per problem: an env that inherits the app's missing key file is not a second problem."""
    seen: set[str] = set()
    out = []
    for problem in problems:
        what = problem.split(": ", 1)[-1] if " does not exist" in problem or "is not set" in problem else problem
        if what not in seen:
            seen.add(what)
            out.append(problem)
    return out


def _plan_problems(service: ServiceBase, app: str, env: str, entry: AppCheck) -> list[str]:
    from graylift.service.releases import ReleaseService

    if not isinstance(service, ReleaseService):
        return []
    try:
        view = asyncio.run(service.plan(app, env, check=False))
    except PlanError as exc:
        return [f"apps.{app} ({env}): {exc}"]
    except GrayliftError as exc:
        return [f"apps.{app} ({env}): cannot plan: {exc}"]
    entry.hosts[env] = len(view.hosts)
    return []


def _missing(data: Any, where: str) -> list[str]:
    """Files named by ``key``/``known_hosts``/``local_dir`` that do not exist; ``*_env`` variables not set."""
    problems: list[str] = []
    if isinstance(data, dict):
        for key, value in data.items():
            path = f"{where}{key}"
            if key in FILE_FIELDS and value is not None and not Path(str(value)).expanduser().exists():
                problems.append(f"{path}: {value} does not exist")
            elif key.endswith("_env") and isinstance(value, str) and value and value not in os.environ:
                problems.append(f"{path}: the environment variable {value} is not set")
            else:
                problems += _missing(value, f"{path}.")
    elif isinstance(data, list):
        for i, item in enumerate(data):
            problems += _missing(item, f"{where[:-1]}[{i}].")
    return problems


__all__ = ["AppCheck", "CheckReport", "check_config"]
