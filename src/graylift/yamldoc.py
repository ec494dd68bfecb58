"""YAML with line numbers: the one loader of the config file and the host files.

``load(text)`` gives the data (as ``yaml.safe_load`` builds it), the line of every mapping key and list item
by its path (``("apps", "shop", "traffic", 0)``), and every duplicate key (YAML keeps the last value
silently; graylift's files refuse them). A file that is not YAML is one :class:`YamlError` with its line.

>>> doc = load("apps:\\n  shop:\\n    traffic:\\n      - type: haproxy\\n  shop: {}\\n")
>>> doc.line(("apps", "shop", "traffic", 0, "type")), doc.line(("apps", "shop", "traffic", 0, "socket"))
(4, 4)
>>> doc.duplicates
(Duplicate(path=('apps', 'shop'), key='shop', line=5, first_line=2),)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

Path_ = tuple[str | int, ...]


class YamlError(ValueError):
    """The text is not YAML: ``message`` says why, ``line`` (1-based) where, when YAML knows."""

    def __init__(self, message: str, line: int | None) -> None:
        super().__init__(message)
        self.message, self.line = message, line


@dataclass(frozen=True)
class Duplicate:
    path: Path_  # of the repeated key
    key: Any
    line: int
    first_line: int


@dataclass(frozen=True)
class Document:
    data: Any
    lines: dict[Path_, int]
    duplicates: tuple[Duplicate, ...]

    def line(self, path: Path_) -> int | None:
        """The line of ``path``, else of its nearest parent the file has (a missing key: its mapping's)."""
        for size in range(len(path), -1, -1):
            if path[:size] in self.lines:
                return self.lines[path[:size]]
        return None


def load(text: str) -> Document:
    """Parse ``text``. Raises YamlError."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        if node is None:
            return Document(None, {}, ())
        lines: dict[Path_, int] = {}
        duplicates: list[Duplicate] = []
        _walk(node, (), lines, duplicates, set())
        data = yaml.constructor.SafeConstructor().construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or "invalid YAML"
        if exc.context:
            where = f" (line {exc.context_mark.line + 1})" if exc.context_mark else ""
            problem = f"{exc.context}{where}: {problem}"
        raise YamlError(problem, mark.line + 1 if mark else None) from None
    except yaml.YAMLError as exc:
        raise YamlError(str(exc), None) from None
    return Document(data, lines, tuple(duplicates))


def _walk(node: yaml.Node, at: Path_, lines: dict[Path_, int], duplicates: list[Duplicate],
          walked: set[int]) -> None:
    if id(node) in walked:  # an alias: its lines were recorded where the anchor is
        return
    walked.add(id(node))
    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, int] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge" or not isinstance(key_node, yaml.ScalarNode):
                continue
            key = yaml.constructor.SafeConstructor().construct_object(key_node)
            line = key_node.start_mark.line + 1
            here = (*at, key)
            if key in seen:
                duplicates.append(Duplicate(here, key, line, seen[key]))
                continue
            seen[key] = line
            lines[here] = line
            _walk(value_node, here, lines, duplicates, walked)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            lines[(*at, index)] = item.start_mark.line + 1
            _walk(item, (*at, index), lines, duplicates, walked)
