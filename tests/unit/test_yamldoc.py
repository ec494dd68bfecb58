"""The one YAML-with-line-numbers loader (graylift.yamldoc) that the config and the host files use."""

from __future__ import annotations

import doctest
import textwrap

import pytest

from graylift import yamldoc
from graylift.yamldoc import Duplicate, YamlError, load

TEXT = textwrap.dedent("""\
    base: &base
      port: 22
    hosts:
      - name: web-1
        <<: *base
      - {name: web-2, tags: {zone: a}}
    empty:
""")


def test_module_doctest() -> None:
    assert doctest.testmod(yamldoc).failed == 0


def test_data_and_lines() -> None:
    doc = load(TEXT)
    assert doc.data == {"base": {"port": 22}, "hosts": [{"name": "web-1", "port": 22},
                                                        {"name": "web-2", "tags": {"zone": "a"}}], "empty": None}
    assert doc.lines[("hosts",)] == 3 and doc.lines[("hosts", 0)] == 4 and doc.lines[("hosts", 0, "name")] == 4
    assert doc.lines[("hosts", 1, "tags", "zone")] == 6
    assert doc.line(("hosts", 0, "port")) == 4  # merged in: the item's own line
    assert doc.line(("nowhere", "at", "all")) is None and doc.line(("empty",)) == 7
    assert doc.duplicates == ()


def test_duplicates_are_reported_not_kept_silently() -> None:
    doc = load("a: 1\nb:\n  c: 1\n  c: 2\na: 3\n")
    assert doc.data == {"a": 3, "b": {"c": 2}}  # what YAML itself makes of it
    assert doc.duplicates == (Duplicate(("b", "c"), "c", 4, 3), Duplicate(("a",), "a", 5, 1))


@pytest.mark.parametrize(("text", "line", "message"), [
    ("a: [1, 2\n", 2, "while parsing a flow sequence (line 1): expected ',' or ']'"),
    ("a: 1\n b: 2\n", 2, "mapping values are not allowed here"),
    ("? [1, 2]\n: x\n", 1, "while constructing a mapping (line 1): found unhashable key"),
])
def test_not_yaml_is_one_error_with_its_line(text: str, line: int, message: str) -> None:
    with pytest.raises(YamlError) as caught:
        load(text)
    assert caught.value.line == line and caught.value.message.startswith(message), caught.value.message


def test_empty_text() -> None:
    assert load("") == load("# nothing\n") == yamldoc.Document(None, {}, ())
