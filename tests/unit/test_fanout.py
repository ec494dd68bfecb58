"""The pre-stage fan-out schedule (graylift.core.fanout), from tables."""

from __future__ import annotations

import math

import pytest

from graylift.core.fanout import FanOut, disk_refusal, rounds, rounds_needed


def names(n: int) -> list[str]:
    return [f"h{i:03d}" for i in range(1, n + 1)]


@pytest.mark.parametrize(("hosts", "seeds", "per_source", "expected_rounds"), [
    (1, 1, 1, 1),
    (2, 1, 1, 2),
    (8, 1, 1, 4),
    (12, 1, 1, 5),
    (200, 1, 1, 9),  # 1 from the repository, then 2, 4, ..., 256
    (200, 2, 1, 8),
    (200, 1, 2, 6),  # 1, 3, 9, 27, 81, 243
    (1000, 1, 1, 11),
])
def test_rounds_grow_with_log_n(hosts: int, seeds: int, per_source: int, expected_rounds: int) -> None:
    schedule = rounds(names(hosts), seeds=seeds, per_source=per_source)
    assert len(schedule) == expected_rounds == rounds_needed(hosts, seeds=seeds, per_source=per_source)
    if seeds == per_source == 1:
        assert len(schedule) == 1 + math.ceil(math.log2(hosts))
    received = [r for rnd in schedule for r, _ in rnd]
    assert sorted(received) == sorted(names(hosts))  # every host once


@pytest.mark.parametrize(("hosts", "seeds", "per_source"), [(200, 1, 1), (50, 3, 2), (7, 1, 3)])
def test_only_seeds_use_the_repository_and_sources_are_staged_and_within_their_slots(
        hosts: int, seeds: int, per_source: int) -> None:
    staged: set[str] = set()
    from_repo = 0
    for rnd in rounds(names(hosts), seeds=seeds, per_source=per_source):
        per: dict[str, int] = {}
        for _receiver, source in rnd:
            if source is None:
                from_repo += 1
            else:
                assert source in staged  # only a host that has the package serves it
                per[source] = per.get(source, 0) + 1
        assert all(count <= per_source for count in per.values())
        staged |= {r for r, _ in rnd}
    assert from_repo == seeds


@pytest.mark.parametrize("staged", [[], ["h001", "h002"]])
def test_a_package_the_repository_can_serve_to_every_host_at_once_comes_from_it_whatever_the_limit(
        staged: list[str]) -> None:
    """A small package (seeds >= receivers) reaches every host straight from the repository, even when at most
    ``limit`` transfers run at once: no peer's server is started for it (each costs a start and a set-up)."""
    fan = FanOut(names(200), list(staged), seeds=200)
    sources: list[str | None] = []
    while not fan.done:
        now = fan.assign(limit=20)
        assert 0 < len(now) <= 20
        for receiver, source in now:
            sources.append(source)
            fan.finished(receiver, True)
    assert len(sources) == 200 - len(staged) and set(sources) == {None}


def test_hosts_already_staged_serve_from_the_first_round() -> None:
    schedule = rounds(names(6), staged=["h001", "h002"])
    assert schedule[0] == [("h003", "h001"), ("h004", "h002")]  # nothing from the repository
    assert all(source is not None for rnd in schedule for _, source in rnd)


def test_a_failing_peer_is_not_asked_again_and_the_receiver_tries_another() -> None:
    fan = FanOut(names(4))
    assert fan.assign() == [("h001", None)]
    fan.finished("h001", True)
    assert fan.assign() == [("h002", "h001")]
    fan.finished("h002", True)
    assert fan.assign() == [("h003", "h001"), ("h004", "h002")]
    fan.finished("h003", False)  # h001's server died, or served bytes that did not verify
    assert fan.bad == {"h001"}
    fan.finished("h004", True)
    assert fan.assign() == [("h003", "h002")]  # back at the front of the queue, another peer
    fan.finished("h003", True)
    assert fan.done and fan.served == {"h001": None, "h002": "h001", "h004": "h002", "h003": "h002"}


def test_with_no_peer_left_the_receiver_falls_back_to_the_repository() -> None:
    fan = FanOut(names(2))
    assert fan.assign() == [("h001", None)]
    fan.finished("h001", True)
    assert fan.assign() == [("h002", "h001")]
    fan.finished("h002", False)
    assert fan.assign() == [("h002", None)]
    fan.finished("h002", True)
    assert fan.done and fan.served["h002"] is None and not fan.given_up


@pytest.mark.parametrize(("fails", "given_up"), [
    ({("h001", None)}, ["h001"]),  # the repository failed the seed: given up, the next host seeds
    (set(), []),
])
def test_a_failure_from_the_repository_gives_the_host_up(fails: set[tuple[str, str | None]],
                                                        given_up: list[str]) -> None:
    fan = FanOut(names(3))
    while not fan.done:
        for receiver, source in fan.assign():
            fan.finished(receiver, (receiver, source) not in fails)
    assert fan.given_up == given_up
    assert sorted(fan.staged) == sorted(set(names(3)) - set(given_up))


def test_a_receiver_is_given_up_after_max_attempts() -> None:
    fan = FanOut(["a", "b", "c", "d", "x"], staged=["a", "b", "c", "d"], max_attempts=2)
    assert fan.assign() == [("x", "a")]
    fan.finished("x", False, blame_source=False)  # the receiver's own fault: the peer stays usable
    assert fan.assign() == [("x", "b")]
    fan.finished("x", False, blame_source=False)
    assert fan.done and fan.given_up == ["x"] and not fan.bad


def test_limit_caps_transfers_in_flight() -> None:
    fan = FanOut(names(10), staged=["s1", "s2", "s3", "s4"])
    assert len(fan.assign(limit=3)) == 3
    assert fan.assign(limit=3) == []


@pytest.mark.parametrize(("free", "size", "refused"), [
    (300 * 2**20, 100 * 2**20, False),
    (299 * 2**20, 100 * 2**20, True),
    (0, None, False),  # size unknown: the stage step itself fails cleanly
])
def test_disk_refusal(free: int, size: int | None, refused: bool) -> None:
    message = disk_refusal("web-07", free_bytes=free, package_bytes=size)
    assert (message is not None) == refused
    if message:
        assert message.startswith("web-07: 299 MiB free") and "needs 300 MiB" in message
