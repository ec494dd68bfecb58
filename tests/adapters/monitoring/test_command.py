"""CommandSilencer with real commands."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from graylift.adapters.monitoring.command import CommandMonitoring, CommandSilencer
from graylift.core.model import Host
from graylift.errors import SilencerError
from graylift.ports import Preflight
from tests.adapters.conftest import freeze_soon

H1 = Host(name="web1", address="10.213.4.1")


def _commands(state: Path) -> CommandSilencer:
    """A monitoring system that keeps one file per muted host (its arguments arrive shell-quoted)."""
    script = state / "mon.sh"
    script.write_text('#!/bin/sh\nf="$(dirname "$0")/$2"\ncase "$1" in\n'
                      '  mute) echo "$3" > "$f"; echo "sil-$2" ;;\n  unmute) rm -f "$f" ;;\n  check) test -e "$f" ;;\n'
                      'esac\n')
    script.chmod(0o755)
    return CommandSilencer(CommandMonitoring(mute_command=f"{script} mute {{host}} {{until}}",
                                             unmute_command=f"{script} unmute {{host}} {{reason}}",
                                             check_command=f"{script} check {{host}} {{reason}}"))


async def test_command_silencer_round_trip_and_quoting(tmp_path: Path) -> None:
    silencer = _commands(tmp_path)
    host = Host(name="web1; touch pwned", address="10.0.0.1")
    until = datetime(2099, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert await silencer.mute(host, until=until, reason="it's a test") == "sil-web1; touch pwned"
    assert (tmp_path / "web1; touch pwned").read_text() == "2099-01-02T03:04:05Z\n"
    assert not (Path.cwd() / "pwned").exists()
    assert await silencer.is_muted(host, reason="it's a test")
    await silencer.unmute(host, reason="it's a test")
    assert not await silencer.is_muted(host, reason="it's a test")


async def test_command_silencer_contract_errors(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match=r"must use \{until\} or \{until_epoch\} so a silence lapses"):
        CommandMonitoring(mute_command="true {host}", unmute_command="true", check_command="true")
    with pytest.raises(ValidationError, match=r"unknown placeholder \{token\}"):
        CommandMonitoring(mute_command="x {until} {token}", unmute_command="true", check_command="true")
    failing = CommandSilencer(CommandMonitoring(mute_command="echo boom {until}; exit 3", unmute_command="true",
                                                check_command="exit 2", timeout=5))
    with pytest.raises(SilencerError, match=r"mute_command for web1 exited 3:\n    boom"):
        await failing.mute(H1, until=datetime.now(UTC) + timedelta(minutes=1), reason="r")
    with pytest.raises(SilencerError, match=r"check_command for web1 exited 2"):
        await failing.is_muted(H1, reason="r")
    slow = CommandSilencer(CommandMonitoring(mute_command="sleep 30 # {until}", unmute_command="true",
                                             check_command="true", timeout=0.5))
    started = time.monotonic()
    with pytest.raises(SilencerError, match=r"timed out after 0.5s"):
        await slow.mute(H1, until=datetime.now(UTC) + timedelta(minutes=1), reason="r")
    assert time.monotonic() - started < 3


async def test_command_silencer_preflight_runs_check_for_every_host(tmp_path: Path) -> None:
    silencer = _commands(tmp_path)
    muted = Host(name="web2", address="10.213.4.2")
    await silencer.mute(muted, until=datetime.now(UTC) + timedelta(minutes=1), reason="r")
    before = sorted(p.name for p in tmp_path.iterdir())
    report = await silencer.preflight([H1, muted])
    assert report == Preflight(notes=("command:command: check_command answered for 2 of 2 hosts",))
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    broken = CommandSilencer(CommandMonitoring(mute_command="true {until}", unmute_command="true",
                                               check_command="echo no such host {host}; exit 3", name="mon"))
    assert (await broken.preflight([H1])).problems == (
        "command:mon: web1: check_command exited 3 (no such host web1); it must exit 0 (muted) or 1 (not muted): "
        "fix it or the monitoring system",)
    slow = CommandSilencer(CommandMonitoring(mute_command="true {until}", unmute_command="true",
                                             check_command="sleep 5", timeout=0.3, name="slow"))
    assert (await slow.preflight([H1])).problems == (
        "command:slow: command for web1 timed out after 0.3s: sleep 5; fix the check_command or the monitoring "
        "system",)
    await silencer.close()


async def test_a_command_that_answered_while_the_controller_was_frozen_is_not_a_timeout() -> None:
    """The controller frozen (its event loop blocked) past the command's limit while the command ran."""
    quick = CommandSilencer(CommandMonitoring(mute_command="sleep 0.3; echo sil-1 # {until}", unmute_command="true",
                                              check_command="true", timeout=1))
    freeze_soon(2.0)
    assert await quick.mute(H1, until=datetime.now(UTC) + timedelta(minutes=1), reason="r") == "sil-1"
