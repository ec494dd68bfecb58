"""The planner, from tables of cases."""

from __future__ import annotations

import pytest

from graylift.core.model import Host, Strategy
from graylift.core.plan import Plan, Timing, batch_size_for, make_plan, spread_by_zone, wave
from graylift.errors import PlanError


def fleet(n: int, *, beta: int = 1, maintenance: tuple[int, ...] = (), zones: str = "") -> list[Host]:
    hosts = []
    for i in range(1, n + 1):
        tags = {"zone": zones[(i - 1) % len(zones)]} if zones else {}
        hosts.append(Host(f"h{i:02d}", f"10.0.0.{i}", group="beta" if i <= beta else "prod", tags=tags,
                          in_service=i not in maintenance))
    return hosts


CASES = [
    # (hosts, strategy, unhealthy, expected batch sizes)
    (fleet(10), Strategy(canary_group="beta", batch_size=3), {}, [1, 3, 3, 3]),
    (fleet(10), Strategy(batch_size=3), {}, [3, 3, 3, 1]),
    (fleet(10), Strategy(batch_size=4), {}, [4, 4, 2]),
    (fleet(12), Strategy(batch_percent=20), {}, [3, 3, 3, 3]),
    (fleet(10, maintenance=(5,)), Strategy(canary_group="beta", batch_size=3), {}, [1, 3, 3, 2]),
    (fleet(10), Strategy(canary_group="beta", batch_size=3), {"h02": "down"}, [1, 3, 3, 2]),
    (fleet(10, beta=2), Strategy(canary_group="beta", canary_count=2, batch_size=3), {}, [2, 3, 3, 2]),
    (fleet(10), Strategy(canary_hosts=("h07",), batch_size=3), {}, [1, 3, 3, 3]),
    (fleet(3), Strategy(batch_size=1), {}, [1, 1, 1]),
    (fleet(2), Strategy(batch_size=1, allow_half_or_more=True), {}, [1, 1]),
]


@pytest.mark.parametrize(("hosts", "strategy", "unhealthy", "sizes"), CASES)
def test_batch_sizes(hosts: list[Host], strategy: Strategy, unhealthy: dict[str, str], sizes: list[int]) -> None:
    plan = make_plan(hosts, strategy, unhealthy=unhealthy)
    assert [len(b.hosts) for b in plan.batches] == sizes
    planned = set(plan.hosts)
    skipped = {s.host for s in plan.skipped}
    assert planned.isdisjoint(skipped)
    assert planned | skipped == {h.name for h in hosts}


REFUSED = [
    # (hosts, strategy, unhealthy, words in the message)
    (fleet(10), Strategy(batch_size=5), {}, "5 of 10"),
    (fleet(10), Strategy(batch_percent=50), {}, "5 of 10"),
    (fleet(10, maintenance=(9, 10)), Strategy(batch_size=3), {}, "5 of 10"),
    (fleet(10), Strategy(batch_size=4), {"h01": "down"}, "5 of 10"),
    (fleet(2), Strategy(batch_size=1), {}, "1 of 2"),
    (fleet(4, beta=2), Strategy(canary_group="beta", canary_count=2, batch_size=1), {}, "the canary batch"),
]


@pytest.mark.parametrize(("hosts", "strategy", "unhealthy", "words"), REFUSED)
def test_half_or_more_is_refused(hosts: list[Host], strategy: Strategy, unhealthy: dict[str, str],
                                 words: str) -> None:
    with pytest.raises(PlanError) as err:
        make_plan(hosts, strategy, unhealthy=unhealthy)
    assert words in str(err.value)
    assert "50%" in str(err.value)


def test_canary_comes_first_and_is_flagged() -> None:
    plan = make_plan(fleet(10, beta=1), Strategy(canary_group="beta", batch_size=3))
    assert plan.batches[0].canary and plan.batches[0].hosts == ("h01",)
    assert plan.batches[0].label == "canary"
    assert [b.label for b in plan.batches[1:]] == ["batch 1", "batch 2", "batch 3"]
    assert not any(b.canary for b in plan.batches[1:])


def test_skipped_hosts_carry_their_reason() -> None:
    plan = make_plan(fleet(10, maintenance=(4,)), Strategy(batch_size=2), unhealthy={"h05": "HTTP 500"})
    reasons = {s.host: s.reason for s in plan.skipped}
    assert reasons == {"h04": "in maintenance (CMDB)", "h05": "unhealthy before release: HTTP 500"}


@pytest.mark.parametrize(("strategy", "error"), [
    (Strategy(canary_group="gamma"), "canary group 'gamma'"),
    (Strategy(canary_hosts=("nope",)), "nope"),
])
def test_bad_canary_is_named(strategy: Strategy, error: str) -> None:
    with pytest.raises(PlanError, match=error):
        make_plan(fleet(10), strategy)


def test_no_hosts_is_an_error() -> None:
    with pytest.raises(PlanError, match="no hosts"):
        make_plan([], Strategy())


def test_only_restricts_hosts_but_cap_counts_cluster() -> None:
    plan = make_plan(fleet(10), Strategy(batch_size=2), only=["h03", "h04", "h05"], canary=False)
    assert plan.hosts == ("h03", "h04", "h05")
    assert plan.cluster_size == 10


@pytest.mark.parametrize(("strategy", "in_service", "size"), [
    (Strategy(batch_size=10), 200, 10),
    (Strategy(batch_percent=10), 200, 20),
    (Strategy(batch_percent=20), 12, 3),
    (Strategy(batch_percent=1), 10, 1),
    (Strategy(), 10, 1),
])
def test_batch_size_for(strategy: Strategy, in_service: int, size: int) -> None:
    assert batch_size_for(strategy, in_service) == size


def test_spread_by_zone_interleaves() -> None:
    order = [h.name for h in spread_by_zone(fleet(6, zones="aab"))]
    # zones: h01 a, h02 a, h03 b, h04 a, h05 a, h06 b
    assert order == ["h01", "h03", "h02", "h06", "h04", "h05"]


def test_estimate_counts_batches_bake_and_pauses() -> None:
    plan = make_plan(fleet(10), Strategy(canary_group="beta", batch_size=3),
                     timing=Timing(host_seconds=10, bake_seconds=60, pause_seconds=5))
    assert plan.estimate_seconds == 4 * 10 + 60 + 3 * 5  # canary + 3 batches


def test_plan_round_trips_through_dict() -> None:
    plan = make_plan(fleet(10, maintenance=(3,)), Strategy(canary_group="beta", batch_size=3))
    assert Plan.from_dict(plan.to_dict()) == plan


@pytest.mark.parametrize(("todo", "out", "cluster", "size", "expected"), [
    # the case: 10 hosts, 3 skipped and 1 failed are out; a rollback of 4 would make 8 of 10 out
    (["a", "b", "c", "d"], {"s1", "s2", "s3", "f1"}, 10, 4, ()),
    (["a", "b", "c", "d"], {"s1", "s2"}, 10, 4, ("a", "b")),
    (["a", "b", "c", "d"], set(), 10, 4, ("a", "b", "c", "d")),
    (["a", "b", "c", "d", "e", "f"], set(), 10, 10, ("a", "b", "c", "d")),
    # hosts of the pass that are already out cost nothing and go first
    (["a", "x", "b"], {"x", "y", "z", "w"}, 10, 4, ("x",)),
    (["a", "x"], {"x"}, 10, 1, ("x",)),
    (["a"], set(), 2, 1, ()),  # 1 of 2 is 50%
    ([], set(), 10, 4, ()),
])
def test_wave_never_takes_half_or_more_out(todo: list[str], out: set[str], cluster: int, size: int,
                                           expected: tuple[str, ...]) -> None:
    got = wave(todo, out, cluster_size=cluster, size=size, strategy=Strategy())
    assert got == expected
    assert len(out | set(got)) * 2 < cluster or not got


def test_hosts_left_needing_attention_count_as_out_and_are_never_canaries() -> None:
    hosts = [Host(f"h{i}", f"10.0.0.{i}", group="beta" if i <= 2 else "prod") for i in range(1, 11)]
    plan = make_plan(hosts, Strategy(canary_group="beta", batch_size=3), attention={"h1": "put-back failed"})
    assert plan.batches[0].hosts == ("h2",)
    assert "h1" in plan.hosts  # released to: a success clears it
    with pytest.raises(PlanError, match="5 of 10"):
        make_plan(hosts, Strategy(batch_size=4), attention={"h9": "x"})  # 4 + 1 out = 50%


def test_a_skipped_canary_is_replaced_from_a_later_batch() -> None:
    hosts = [Host(f"h{i}", f"10.0.0.{i}", group="beta" if i <= 2 else "prod") for i in range(1, 7)]
    plan = make_plan(hosts, Strategy(canary_group="beta", batch_size=2))
    assert plan.canary_required == 1 and plan.batches[0].hosts == ("h1",)
    replaced = plan.with_canary_replacement("h2")
    assert replaced.batches[0].hosts == ("h1", "h2")
    assert "h2" not in replaced.batches[1].hosts + replaced.batches[2].hosts + replaced.batches[3].hosts
    assert Plan.from_dict(replaced.to_dict()) == replaced
