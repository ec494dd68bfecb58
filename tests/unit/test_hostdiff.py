"""Re-importing a host list: added, removed, changed, maintenance kept (a table of cases), pure."""

from __future__ import annotations

import doctest

import pytest

from graylift.core import hostdiff
from graylift.core.hostdiff import diff_hosts
from graylift.core.model import Host

A = Host("a", "10.0.0.1", tags={"zone": "x"})


def test_module_doctest() -> None:
    assert doctest.testmod(hostdiff).failed == 0


@pytest.mark.parametrize(("before", "after", "lines", "stored_in_service"), [
    ([A], [A], [], {"a": True}),
    ([], [A], ["+ a root@10.0.0.1:22 group default"], {"a": True}),
    ([A], [], ["- a root@10.0.0.1:22 group default"], {}),
    ([A], [Host("a", "10.0.0.9", user="deploy", group="web", tags={"zone": "x"})],
     ["~ a: address 10.0.0.1 -> 10.0.0.9; user root -> deploy; group default -> web"], {"a": True}),
    ([A], [Host("a", "10.0.0.1", tags={"zone": "y", "rack": ""})],
     ["~ a: tags.rack (none) -> ''; tags.zone x -> y"], {"a": True}),
    ([A], [Host("a", "10.0.0.1", tags={"zone": "x"}, in_service=False)], ["~ a: in_service yes -> no"],
     {"a": False}),
    ([Host("a", "10.0.0.1", tags={"zone": "x"}, in_service=False)], [A],
     ["= a: stays in maintenance (`graylift hosts maintenance a --off` puts it back)"], {"a": False}),
])
def test_diff(before: list[Host], after: list[Host], lines: list[str], stored_in_service: dict[str, bool]) -> None:
    diff = diff_hosts(before, after)
    assert diff.lines() == lines
    assert {h.name: h.in_service for h in diff.result} == stored_in_service
    assert diff.count == len(after)


def test_summary_counts_each_kind_once() -> None:
    before = [Host("a", "10.0.0.1"), Host("b", "10.0.0.2"), Host("c", "10.0.0.3")]
    after = [Host("a", "10.0.0.1"), Host("b", "10.0.0.2", port=2222), Host("d", "10.0.0.4")]
    assert diff_hosts(before, after).summary() == "1 added, 1 removed, 1 changed, 1 unchanged"
