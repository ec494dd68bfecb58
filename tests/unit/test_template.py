"""The one template renderer (graylift.core.template), from tables: rendering, quoting and the load-time checks."""

from __future__ import annotations

import doctest

import pytest

from graylift.core import template
from graylift.core.model import Host
from graylift.core.template import host_values, names, problem, render
from graylift.errors import ConfigError

HOST = frozenset({"host", "address"})


def test_module_doctest() -> None:
    assert doctest.testmod(template).failed == 0


@pytest.mark.parametrize(("text", "values", "quote", "expected"), [
    ("{host}", {"host": "web-1"}, False, "web-1"),
    ("{address}:{port}", {"address": "10.0.0.5", "port": "8080"}, False, "10.0.0.5:8080"),
    ("{{literal}} {host}", {"host": "a"}, False, "{literal} a"),
    ("ctl {host}", {"host": "web 1"}, True, "ctl 'web 1'"),
    ("ctl {host}", {"host": "a'b"}, True, "ctl 'a'\"'\"'b'"),
    ("ctl {host}", {"host": "plain"}, True, "ctl plain"),
    ("ctl --until {until}", {"until": ""}, True, "ctl --until ''"),
    ("no placeholders", {}, True, "no placeholders"),
])
def test_render(text: str, values: dict[str, str], quote: bool, expected: str) -> None:
    assert render(text, values, quote=quote) == expected


@pytest.mark.parametrize(("text", "values", "allowed", "message"), [
    ("{hots}", {"host": "a"}, None, "template '{hots}': unknown placeholder {hots}; known placeholders: {host}"),
    ("{host}", {}, HOST, "template '{host}': no value for placeholder {host}"),
    ("{host", {"host": "a"}, None, "template '{host' is not a valid template (expected '}' before end of string; "
                                   "write {{ and }} for literal braces)"),
    ("{host!r}", {"host": "a"}, None, "template '{host!r}': placeholder {host} must be plain"),
    ("{host:>9}", {"host": "a"}, None, "template '{host:>9}': placeholder {host} must be plain"),
])
def test_render_refuses_what_the_config_would(text: str, values: dict[str, str], allowed: frozenset[str] | None,
                                              message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        render(text, values, allowed=allowed)
    assert str(caught.value).startswith(message)


@pytest.mark.parametrize(("text", "shell", "expected"), [
    ("ctl {host}", True, None),
    ("ctl --name={host}", True, None),
    ("echo 'it''s' {host}", True, None),
    ("ctl '{host}'", True, "placeholder {host} is inside ' quotes"),
    ('ctl "x {address}"', True, 'placeholder {address} is inside " quotes'),
    ("ctl \\'{host}", True, None),  # an escaped quote opens nothing
    ("ctl '{host}'", False, None),  # quotes only matter in shell templates
    ("{port}", False, "unknown placeholder {port}; known placeholders: {address} {host}"),
    ("}{", False, "is not a valid template"),
])
def test_problem(text: str, shell: bool, expected: str | None) -> None:
    found = problem(text, HOST, shell=shell)
    assert (found is None) if expected is None else (found is not None and found.startswith(expected)), found


def test_names_and_host_values() -> None:
    assert names("{a}-{b}-{a} {{c}}") == {"a", "b"}
    with pytest.raises(ValueError, match="not a valid template"):
        names("{a")
    assert host_values(Host("web-1", "10.0.0.1")) == {"host": "web-1", "address": "10.0.0.1"}
    assert render("{host}@{address}", host_values(Host("web-1", "10.0.0.1")), allowed=HOST) == "web-1@10.0.0.1"
