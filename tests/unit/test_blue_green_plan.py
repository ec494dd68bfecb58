"""The blue-green plan (graylift.core.bluegreen), from tables: groups, the switch order, the idle undo."""

from __future__ import annotations

import doctest
import re
from pathlib import Path

import pytest
from tests.unit.test_config_errors import APP

import graylift.core.bluegreen as bluegreen_module
from graylift.config import load_config
from graylift.core.bluegreen import (
    BlueGreen,
    Phase,
    idle_undo,
    make_blue_green_plan,
    phase_of,
    serving_group,
    switch_order,
)
from graylift.core.flow import Step, undo_steps
from graylift.core.model import Host, Strategy, StrategyKind
from graylift.core.plan import Plan
from graylift.errors import PlanError

BG = Strategy(kind=StrategyKind.BLUE_GREEN, rollback_window_seconds=60)


def fleet(spec: str) -> list[Host]:
    """``"b1:blue g1:green g2:green-"`` -> hosts; a trailing ``-`` means in maintenance."""
    hosts = []
    for i, item in enumerate(spec.split(), 1):
        name, group = item.split(":")
        hosts.append(Host(name, f"10.0.0.{i}", group=group.rstrip("-"), in_service=not group.endswith("-")))
    return hosts


# (hosts, serving, idle batch, live hosts, skipped)
PLANS = [
    ("b1:blue b2:blue g1:green g2:green", "blue", ("g1", "g2"), ("b1", "b2"), ()),
    ("b1:blue b2:blue g1:green g2:green", "green", ("b1", "b2"), ("g1", "g2"), ()),
    ("b1:blue g1:green g2:green g3:green", "blue", ("g1", "g2", "g3"), ("b1",), ()),  # groups may differ in size
    ("b1:blue b2:blue- g1:green g2:green-", "blue", ("g1",), ("b1",), ("b2", "g2")),  # maintenance: in neither
]


@pytest.mark.parametrize(("hosts", "serving", "idle", "live", "skipped"), PLANS)
def test_plan_puts_the_idle_group_in_one_batch(hosts: str, serving: str, idle: tuple[str, ...],
                                               live: tuple[str, ...], skipped: tuple[str, ...]) -> None:
    plan = make_blue_green_plan(fleet(hosts), BG, serving=serving)
    assert [b.hosts for b in plan.batches] == [idle]
    bg = BlueGreen.of(plan)
    assert bg.live_names == live and bg.idle_names == idle and bg.serving == serving == bg.live
    assert tuple(s.host for s in plan.skipped) == skipped
    assert bg.window_seconds == 60
    again = Plan.from_dict(plan.to_dict())  # what the store keeps
    assert again == plan and BlueGreen.of(again.to_dict()) == bg


@pytest.mark.parametrize(("hosts", "message"), [
    ("b1:blue g1:green x1:beta", "host(s) x1 (beta) are in neither group blue nor green"),
    ("b1:blue b2:blue", "group 'green' has no in-service host"),
    ("b1:blue g1:green-", "group 'green' has no in-service host"),
])
def test_plan_refuses_groups_it_cannot_switch(hosts: str, message: str) -> None:
    with pytest.raises(PlanError, match=re.escape(message)):
        make_blue_green_plan(fleet(hosts), BG, serving="blue")


def test_plan_refuses_an_unknown_serving_group() -> None:
    with pytest.raises(PlanError, match="'red' is not one of"):
        make_blue_green_plan(fleet("b1:blue g1:green"), BG, serving="red")


# (into, out_of, order)
SWITCHES = [
    (("g1", "g2"), ("b1", "b2"), ["in g1", "in g2", "out b1", "out b2"]),
    (("b1",), ("g1", "g2", "g3"), ["in b1", "out g1", "out g2", "out g3"]),
    (("g1",), ("g1", "b1"), ["in g1", "out b1"]),  # a host in both is only put in
    ((), ("b1",), ["out b1"]),
]


@pytest.mark.parametrize(("into", "out_of", "order"), SWITCHES)
def test_switch_puts_every_host_in_before_any_goes_out(into: tuple[str, ...], out_of: tuple[str, ...],
                                                         order: list[str]) -> None:
    assert [f"{d} {h}" for d, h in switch_order(into=into, out_of=out_of)] == order


# (begun, has_previous, undo): an idle host goes back to what it ran, and is never put into traffic
UNDO = [
    ((Step.PRECHECK, Step.STAGE), True, ()),
    ((Step.MUTE,), True, (Step.UNMUTE,)),
    ((Step.MUTE, Step.TAKE_OUT, Step.QUIET), True, (Step.UNMUTE,)),
    ((Step.TAKE_OUT, Step.STOP, Step.SWITCH, Step.START, Step.HEALTH), True,
     (Step.STOP, Step.SWITCH, Step.START, Step.HEALTH, Step.UNMUTE)),
    ((Step.TAKE_OUT, Step.STOP, Step.START, Step.HEALTH, Step.UNMUTE), True,
     (Step.STOP, Step.SWITCH, Step.START, Step.HEALTH, Step.UNMUTE)),
    ((Step.TAKE_OUT, Step.STOP), False, (Step.STOP, Step.UNMUTE)),
]


@pytest.mark.parametrize(("begun", "has_previous", "undo"), UNDO)
def test_idle_undo(begun: tuple[Step, ...], has_previous: bool, undo: tuple[Step, ...]) -> None:
    assert idle_undo(begun, has_previous=has_previous) == undo
    assert set(undo) <= set(undo_steps(begun, has_previous=has_previous))


@pytest.mark.parametrize(("cursor", "phase"), [(0, Phase.IDLE), (1, Phase.SWITCH), (2, Phase.DONE), (5, Phase.DONE)])
def test_phase_of_the_cursor(cursor: int, phase: Phase) -> None:
    assert phase_of(cursor) is phase


@pytest.mark.parametrize(("plans", "serving"), [
    ([], "blue"),  # the first blue-green release: the first group serves
    ([{"batches": []}], "blue"),  # rolling releases say nothing
    ([{"blue_green": {"serving": "green"}}, {"blue_green": {"serving": "blue"}}], "green"),  # the newest wins
    ([{"blue_green": {"serving": "red"}}, {"blue_green": {"serving": "blue"}}], "blue"),  # groups renamed since
])
def test_serving_group_is_what_the_newest_switch_left(plans: list[dict[str, object]], serving: str) -> None:
    assert serving_group(plans, ("blue", "green")) == serving


def test_config_blue_green_section(tmp_path: Path) -> None:
    path = tmp_path / "graylift.yaml"
    path.write_text(APP + "    strategy:\n      kind: blue_green\n"
                    "      blue_green: {groups: [left, right], rollback_window: 30m}\n")
    strategy = load_config(path).app_for_env("pyapp", "prod").strategy_model()
    assert strategy.kind is StrategyKind.BLUE_GREEN
    assert strategy.blue_green_groups == ("left", "right")
    assert strategy.rollback_window_seconds == 1800
    assert Strategy().kind is StrategyKind.ROLLING  # the default


def test_module_doctest() -> None:
    result = doctest.testmod(bluegreen_module)
    assert result.failed == 0 and result.attempted >= 5
