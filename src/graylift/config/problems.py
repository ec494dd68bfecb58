"""Pydantic's validation errors as graylift's problems: each at the file's path, line and field, worded
for the person who wrote the file (``unknown key 'sokcet'; allowed keys: type, socket, ...``,
``unknown type 'haproxyy'; known types: haproxy, zookeeper, ...``), then one ConfigError for all of them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

from graylift.config.merge import Path_
from graylift.errors import ConfigError
from graylift.schema import show


@dataclass(frozen=True)
class Source:
    file: str
    lines: dict[Path_, int]


@dataclass(frozen=True)
class Problem:
    path: Path_
    message: str
    line: int | None = None  # when the path alone does not tell (a duplicate key)


def problems_of(exc: ValidationError, data: Any, origin: Callable[[Path_], Path_],
              root: type[BaseModel]) -> list[Problem]:
    problems = []
    for error in exc.errors(include_url=False):
        loc = tuple(error["loc"])
        data_path = _data_path(data, loc)
        message = _message(error, error.get("ctx") or {}, root, loc)
        if error["type"] == "union_tag_invalid":
            data_path = (*data_path, "type")
        problems.append(Problem(origin(data_path), message))
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
        return f"unknown key {show(loc[-1])}{suffix}"
    if kind == "missing":
        return "is required"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return f"must be a mapping (key: value), got {show(value)}"
    if kind == "list_type":
        return f"must be a list, got {show(value)}"
    if kind == "string_type":
        return f"must be a text string, got {show(value)}"
    if kind == "literal_error" and loc and loc[-1] == "type":
        known = str(ctx.get("expected", "")).replace("'", "").replace(" or ", ", ")
        return f"unknown type {show(value)}; known types: {known}"
    if kind in ("enum", "literal_error"):
        expected = str(ctx.get("expected", "")).replace("'", "").replace(" or ", ", ")
        return f"must be one of: {expected}; got {show(value)}"
    if kind == "union_tag_invalid":
        tags = str(ctx.get("expected_tags", "")).replace("'", "")
        return f"unknown type {show(ctx.get('tag'))}; known types: {tags}"
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


def config_error(problems: list[Problem], source: Source | None) -> ConfigError:
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


def _line_of(path: Path_, source: Source | None) -> int | None:
    if source is None:
        return None
    for size in range(len(path), -1, -1):
        if path[:size] in source.lines:
            return source.lines[path[:size]]
    return None
