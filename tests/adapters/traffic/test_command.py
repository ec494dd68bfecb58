"""CommandSwitch with small real shell scripts that keep a per-host state file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from graylift.adapters.registry import Build
from graylift.adapters.traffic.command import CommandSwitch, CommandTraffic
from graylift.adapters.transport.local import LocalTransport
from graylift.core.model import Host
from graylift.errors import ConfigError, TrafficError
from graylift.ports import Transport

HOST = Host(name="web-1", address="10.213.0.7")


def _scripts(tmp_path: Path) -> dict[str, Any]:
    state = tmp_path / "state"
    state.mkdir()
    lb = tmp_path / "lb.sh"
    lb.write_text(f"""#!/bin/sh
# lb.sh ACTION HOST ADDRESS PORT APP: a fake registry that keeps one file per host
set -eu
f={state}/"$2"
echo "$1 $2 $3 $4 $5" >> {tmp_path}/calls.log
case "$1" in
  out) echo "$3:$4" > "$f.out" ;;
  in) rm -f "$f.out" ;;
  verify) echo "checking $2"; if [ -e "$f.out" ]; then echo out; else echo in; fi ;;
  active) echo 3 ;;
  fail) echo "registry said: no such member $2" >&2; exit 4 ;;
esac
""")
    lb.chmod(0o755)
    return {"take_out": f"{lb} out {{host}} {{address}} {{port}} {{app}}",
            "put_back": f"{lb} in {{host}} {{address}} {{port}} {{app}}",
            "verify": f"{lb} verify {{host}} {{address}} {{port}} {{app}}"}


async def test_take_out_verify_put_back(tmp_path: Path) -> None:
    switch = CommandSwitch(CommandTraffic(port=8080, **_scripts(tmp_path),
                                          in_flight=f"{tmp_path}/lb.sh active {{host}} x x x"), app="shop")
    assert switch.name == "command:shop"
    assert await switch.is_in(HOST) and not await switch.is_out(HOST)
    await switch.take_out(HOST)
    await switch.take_out(HOST)
    assert await switch.is_out(HOST) and not await switch.is_in(HOST)
    assert (tmp_path / "state" / "web-1.out").read_text() == "10.213.0.7:8080\n"
    assert await switch.in_flight(HOST) == 3
    await switch.put_back(HOST)
    assert await switch.is_in(HOST)
    assert "out web-1 10.213.0.7 8080 shop" in (tmp_path / "calls.log").read_text()


async def test_values_are_shell_quoted(tmp_path: Path) -> None:
    switch = CommandSwitch(CommandTraffic(**_scripts(tmp_path)), app="shop")
    evil = Host(name="a b;touch pwned", address="10.213.0.8")
    await switch.take_out(evil)
    assert (tmp_path / "state" / "a b;touch pwned.out").exists()
    assert not Path("pwned").exists() and not (tmp_path / "pwned").exists()
    assert await switch.in_flight(evil) is None


async def test_failure_and_timeout_are_traffic_errors_with_output(tmp_path: Path) -> None:
    s = _scripts(tmp_path)
    failing = CommandSwitch(CommandTraffic(take_out=f"{tmp_path}/lb.sh fail {{host}} a p x", put_back=s["put_back"],
                                           verify=s["verify"]), app="shop")
    with pytest.raises(TrafficError, match=r"(?s)take_out command for web-1 failed \(exit 4\).*no such"):
        await failing.take_out(HOST)
    slow = CommandSwitch(CommandTraffic(take_out="sleep 5", put_back="true", verify="echo out", timeout=0.3),
                         app="shop")
    with pytest.raises(TrafficError, match=r"timed out after 0.3s"):
        await slow.take_out(HOST)
    odd = CommandSwitch(CommandTraffic(take_out="true", put_back="true", verify="echo draining",
                                       in_flight="echo many"), app="shop")
    assert not await odd.is_out(HOST) and not await odd.is_in(HOST)
    with pytest.raises(TrafficError, match=r"printed 'many'"):
        await odd.in_flight(HOST)


def test_the_model_checks_placeholders_and_from_config_the_connector() -> None:
    with pytest.raises(ValidationError, match=r"unknown placeholder \{version\}"):
        CommandTraffic(take_out="x {version}", put_back="true", verify="echo in")
    with pytest.raises(ValidationError, match=r"inside ' quotes"):
        CommandTraffic(take_out="x '{host}'", put_back="true", verify="echo in")
    entry = CommandTraffic(take_out="true", put_back="true", verify="echo in", run_on="host")
    with pytest.raises(ConfigError, match=r"^traffic\[1\]\.run_on: run_on: host needs the release's SSH connector"):
        CommandSwitch.from_config(entry, Build("traffic[1]", app="shop"))


async def test_run_on_host_uses_the_hosts_transport(tmp_path: Path) -> None:
    seen: list[str] = []

    async def connect(host: Host) -> Transport:
        seen.append(host.name)
        return LocalTransport(host)

    entry = CommandTraffic(take_out=f"touch {tmp_path}/drained", put_back=f"rm -f {tmp_path}/drained",
                           verify=f"[ -e {tmp_path}/drained ] && echo out || echo in", run_on="host")
    switch = CommandSwitch.from_config(entry, Build("traffic[0]", app="shop", connect=connect))
    await switch.take_out(HOST)
    assert await switch.is_out(HOST)
    assert seen == ["web-1", "web-1"]


async def test_preflight_runs_verify_for_every_host_and_changes_nothing(tmp_path: Path) -> None:
    switch = CommandSwitch(CommandTraffic(port=8080, **_scripts(tmp_path)), app="shop")
    other = Host(name="web-2", address="10.213.0.8")
    await switch.take_out(other)
    state = tmp_path / "state"
    before = sorted(p.name for p in state.iterdir())
    report = await switch.preflight([HOST, other])
    assert report.problems == ()
    assert report.notes == ("command:shop: verify answered for 2 of 2 hosts", "command:shop: already out: web-2")
    assert sorted(p.name for p in state.iterdir()) == before
    calls = (tmp_path / "calls.log").read_text().splitlines()
    assert {line.split()[0] for line in calls[-2:]} == {"verify"}  # only verify ran
    await switch.close()


async def test_preflight_names_failing_and_unclear_verify(tmp_path: Path) -> None:
    s = _scripts(tmp_path)
    failing = CommandSwitch(CommandTraffic(take_out=s["take_out"], put_back=s["put_back"],
                                           verify=f"{tmp_path}/lb.sh fail {{host}} a p x"), app="shop")
    (problem,) = (await failing.preflight([HOST])).problems
    assert problem == (f"command:shop: verify command for web-1 failed (exit 4) on the controller: {tmp_path}/lb.sh "
                       "fail web-1 a p x (last output: registry said: no such member web-1); fix the verify command "
                       "or the host")
    unclear = CommandSwitch(CommandTraffic(take_out="true", put_back="true", verify="echo draining"), app="shop")
    assert (await unclear.preflight([HOST])).problems == (
        "command:shop: web-1: the verify command printed 'draining' on its last line, neither 'in' nor 'out'; "
        "make it print one of them (docs/traffic.md)",)
