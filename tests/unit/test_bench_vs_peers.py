"""bench/vs_peers.py's pure parts: the batch plan every tool follows, the physical-limit arithmetic, the parsing
of the minimal driver's host-side timestamps and of ``--fleets``, and the shell steps (no timing asserted)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


def _load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


common = _load("peers_common_under_test", BENCH / "peers" / "common.py")
report = _load("peers_report_under_test", BENCH / "peers" / "report.py")


@pytest.mark.parametrize(("hosts", "size", "plan"), [
    (3, 1, [1, 1, 1]),
    (6, 2, [1, 2, 2, 1]),
    (12, 3, [1, 3, 3, 3, 2]),
    (50, 13, [1, 13, 13, 13, 10]),
    (200, 50, [1, 50, 50, 50, 49]),
])
def test_batch_plan_is_a_canary_then_ceil_quarter_batches_under_half(hosts: int, size: int, plan: list[int]) -> None:
    names = [f"h{i:03}" for i in range(hosts)]
    assert common.batch_size(hosts) == size
    assert size * 2 < hosts
    batches = common.batch_plan(names, size)
    assert [len(b) for b in batches] == plan
    assert [h for b in batches for h in b] == names  # every host once, in order, the first is the canary


def test_physical_limit_sums_each_batchs_slowest_host() -> None:
    waits = {"a": common.HostWaits(0.5, 1.0, 2.0),  # 3.5
             "b": common.HostWaits(0.0, 0.5, 1.0),  # 1.5
             "c": common.HostWaits(0.25, 0.25, 4.0),  # 4.5
             "d": common.HostWaits(1.0, 1.0, 1.0)}  # 3.0
    assert common.physical_limit([["a"], ["b", "c"], ["d"]], waits) == pytest.approx(3.5 + 4.5 + 3.0)
    assert common.physical_limit([["a", "b", "c", "d"]], waits) == pytest.approx(4.5)
    with pytest.raises(KeyError):
        common.physical_limit([["a", "e"]], waits)


def test_host_times_line_gives_stop_and_start_to_healthy() -> None:
    assert common.parse_host_times("times 1700000000.100 1700000000.350 1700000000.360 1700000001.860") == \
        pytest.approx((0.25, 1.5))
    for bad in ("staged", "times 1 2 3", "time 1 2 3 4"):
        with pytest.raises(ValueError):
            common.parse_host_times(bad)


def test_graylift_own_waits_use_the_same_formula() -> None:
    batches = [{"hosts": ["a"]}, {"hosts": ["b", "c"]}]
    per_host = {"a": {"take_out": 0.1, "quiet": 0.1, "stop": 0.3, "start": 0.1, "health": 0.4, "stage": 9.0},
                "b": {"take_out": 0.0, "quiet": 0.0, "stop": 0.2, "start": 0.1, "health": 0.2},
                "c": {"stop": 1.0}}
    assert report.own_waits_limit(batches, per_host) == pytest.approx(1.0 + 1.0)


def test_fleets_option() -> None:
    vs_peers = _load("vs_peers_under_test", BENCH / "vs_peers.py")
    assert vs_peers.parse_fleets("pyapp:50, shop:6,") == [("pyapp", 50), ("shop", 6)]
    for bad in ("pyapp", "nginx:4", "shop:two", "pyapp:2"):
        with pytest.raises(ValueError, match="bad fleet"):
            vs_peers.parse_fleets(bad)


def test_shell_steps_quote_their_arguments_and_parse(tmp_path: Path) -> None:
    spec = {"app": "pyapp", "deploy": "/srv/py app", "version": "2.0.0", "port": 8080, "sha256": "ab" * 32,
            "url": common.package_url("http://10.0.0.1:81", "pyapp", "2.0.0")}
    steps = common.step_scripts(spec)
    assert spec["url"] == "http://10.0.0.1:81/pyapp/2.0.0/pyapp-2.0.0.tar.gz"
    assert "'/srv/py app/releases/2.0.0'" in steps["stage"]
    assert "tar -xzf" in steps["stage"] and "sha256sum -c" in steps["stage"]
    assert "tar -xzf" not in common.step_scripts({**spec, "app": "shop"})["stage"]  # a war stays a file
    for name, script in steps.items():
        assert subprocess.run(["sh", "-n", "-c", script], check=False).returncode == 0, name


def test_switch_step_moves_current_atomically(tmp_path: Path) -> None:
    (tmp_path / "releases" / "2.0.0").mkdir(parents=True)
    (tmp_path / "current").symlink_to("releases/1.0.0")
    subprocess.run(["sh", "-c", common.switch_script(str(tmp_path), "2.0.0")], check=True)
    assert (tmp_path / "current").readlink() == Path("releases/2.0.0")


def test_rounds_interleave_the_tools_and_the_summary_takes_medians_of_same_round_ratios() -> None:
    vs_peers = _load("vs_peers_rounds_under_test", BENCH / "vs_peers.py")
    tools = ("graylift", "minimal", "pyinfra")
    assert vs_peers.round_order(tools, 0) == [("graylift", "release"), ("graylift", "rollback"),
                                              ("minimal", "release"), ("pyinfra", "release")]
    assert vs_peers.round_order(tools, 1) == [("pyinfra", "release"), ("minimal", "release"),
                                              ("graylift", "release"), ("graylift", "rollback")]

    def run(tool: str, kind: str, number: int, wall: float, cpu: float = 1.0) -> dict[str, object]:
        return {"tool": tool, "kind": kind, "round": number, "wall": wall, "cpu_per_host": cpu, "failed": 0,
                "from": "1.0.0", "to": "2.0.0", "cpu": cpu * 3, "requests": 100}

    walls = {0: (10.0, 6.0, 12.0), 1: (30.0, 24.0, 24.0), 2: (12.0, 6.0, 16.0)}  # release, rollback, pyinfra
    runs = [run(tool, kind, number, wall, 3.0 if (number, tool, kind) == (2, "graylift", "release") else 1.0)
            for number, three in walls.items()
            for (tool, kind), wall in zip((("graylift", "release"), ("graylift", "rollback"), ("pyinfra", "release")),
                                          three, strict=True)]
    limits = [{"seconds": 5.0}, {"seconds": 20.0}, {"seconds": 8.0, "hosts": {"h1": {}}}]
    result = report.fleet_result("pyapp", 3, [["h1"], ["h2", "h3"]], limits, runs)
    assert [r["ratio"] for r in runs[:3]] == [2.0, 1.2, 2.4]  # each to its own round's limit
    assert result["limit_seconds"] == 8.0 and result["rounds"] == 3 and result["limit_hosts"] == {"h1": {}}
    assert result["rollback_over_release"] == 0.6  # the median of 0.6, 0.8 and 0.5
    rows = {(r["tool"], r["kind"]): r for r in result["summary"]}
    assert rows[("graylift", "release")] == {"tool": "graylift", "kind": "release", "runs": 3, "wall": 12.0,
                                             "ratio": 1.5, "ratio_range": [1.5, 2.0], "cpu_per_host": 1.0,
                                             "failed": 0}
    assert rows[("pyinfra", "release")]["ratio"] == 2.0 and rows[("pyinfra", "release")]["ratio_range"] == [1.2, 2.4]
    table = report.markdown({"fleets": [result]})
    assert "| pyapp:3 | graylift release | 3 | 12.0 | 1.50 (1.50-2.00) | 1.000 | 0 |" in table
    assert "| pyapp:3 | 1+2 | pyinfra | release 1.0.0→2.0.0 (round 2) | 24.0 | 1.20 |" in table
