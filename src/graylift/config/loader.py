"""Reading graylift.yaml: YAML with line numbers, validation, and one ConfigError for every problem.

``load_config(path)`` validates the file with :class:`GrayliftConfig` and every app merged with each of its
env overrides (``apps.<app>.envs.<env>``, deep-merged on the raw data before validation, so a problem in an
override names the override's own line). Every problem is collected, located (file, line, field) and
raised as one :class:`graylift.errors.ConfigError`, sorted by line.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from graylift import yamldoc
from graylift.config.app import AppConfig
from graylift.config.merge import Path_, merge_env
from graylift.config.problems import Problem, Source, config_error, problems_of
from graylift.config.root import GrayliftConfig
from graylift.errors import ConfigError
from graylift.schema import show


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
    source = Source(file, lines)
    if data is None:
        raise ConfigError("the config file is empty; run `graylift init` for an annotated example", file=file)
    if not isinstance(data, dict):
        raise ConfigError(f"the config file must be a mapping of sections (state, ssh, repositories, apps), "
                          f"got {show(data)}", file=file, line=1)
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
        problems += problems_of(exc, data, lambda p: p, GrayliftConfig)
    problems += _envproblems_of(data, context, {(p.path, p.message) for p in problems})
    if problems or config is None:
        raise config_error(problems, source)
    config._source = source
    return config


def _envproblems_of(data: dict[str, Any], context: dict[str, Any],
                  known: set[tuple[Path_, str]]) -> list[Problem]:
    """Validate every app merged with each of its env overrides; ``known`` problems are not repeated."""
    problems: list[Problem] = []
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
                problems.append(Problem(("apps", name, "envs", env, "envs"),
                                         "an env override cannot contain envs"))
                continue
            merged, origin = merge_env(raw_app, ("apps", name), env)
            try:
                AppConfig.model_validate(merged, context=context)
            except ValidationError as exc:
                for problem in problems_of(exc, merged, lambda p: p, AppConfig):
                    if (("apps", name, *problem.path), problem.message) not in known:
                        problems.append(Problem(origin(problem.path), problem.message))
    return problems


def _parse_yaml(text: str, file: str) -> tuple[Any, dict[Path_, int], list[Problem]]:
    """The data, a map from key path to line (1-based), and duplicate-key problems."""
    try:
        doc = yamldoc.load(text)
    except yamldoc.YamlError as exc:
        raise ConfigError(f"invalid YAML: {exc.message}", file=file, line=exc.line) from None
    duplicates = [Problem(d.path, f"duplicate key {show(d.key)} (first given on line {d.first_line})", d.line)
                  for d in doc.duplicates]
    return doc.data, doc.lines, duplicates
