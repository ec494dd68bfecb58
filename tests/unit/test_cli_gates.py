"""The CLI of the gates: schedule / schedules / unschedule, promote-env and release outside a window, with
their exit codes (2 usage, 3 refused by a rule) over a real SQLite store."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from graylift import cli
from graylift.core.windows import DAYS

CONFIG = """\
state: sqlite:///{root}/state.db
apps:
  shop:
    package: {{type: war, local_dir: {root}}}
    deploy: {{dir: /srv/shop}}
    commands: {{start: bin/start, stop: bin/stop}}
    health: {{none: true}}
    envs:
      prod:
        promotion: {{after: staging}}
        strategy: {{windows: [{{days: {day}, hours: "03:00-04:00", tz: UTC}}]}}
"""


@pytest.fixture
def config(tmp_path: Path) -> Path:
    day = DAYS[(datetime.now(UTC).weekday() + 2) % 7]  # a window that is not open now
    path = tmp_path / "graylift.yaml"
    path.write_text(CONFIG.format(root=tmp_path, day=day))
    return path


def gl(config: Path, *args: str) -> tuple[int, str]:
    done = CliRunner().invoke(cli.app, ["-c", str(config), *args], env={"COLUMNS": "300"})
    return done.exit_code, done.output


def test_schedule_list_and_cancel(config: Path) -> None:
    at = (datetime.now(UTC) + timedelta(hours=1)).isoformat(timespec="minutes")
    code, out = gl(config, "schedule", "shop", "1.0.0", "--env", "staging", "--at", at)
    assert code == 0 and "scheduled #1: shop 1.0.0 (staging)" in out, out
    code, out = gl(config, "schedules", "-o", "json")
    [row] = json.loads(out)
    assert (row["id"], row["state"], row["version"]) == (1, "waiting", "1.0.0")
    assert gl(config, "unschedule", "1")[0] == 0
    code, out = gl(config, "unschedule", "1")
    assert code == 3 and "is cancelled, not waiting" in out


@pytest.mark.parametrize(("args", "code", "said"), [
    (["schedule", "shop", "1.0.0", "--env", "staging", "--at", "tomorrow"], 2, "is not a time like"),
    (["schedule", "shop", "1.0.0", "--env", "staging", "--at", "2001-01-01T00:00Z"], 3, "is in the past"),
    (["schedule", "shopp", "1.0.0", "--env", "staging", "--at", "2099-01-01T00:00Z"], 2, "unknown app 'shopp'"),
    (["release", "shop", "1.0.0", "--env", "prod"], 3, "is released only in its release windows"),
    (["release", "shop", "1.0.0", "--env", "prod", "--outside-window", "hotfix"], 3,
     "goes to prod only after it succeeded in staging"),
    (["promote-env", "shop", "1.0.0", "--from", "test", "--to", "prod"], 3,
     "comes to prod from staging (promotion.after), not from test"),
    (["release", "shop", "1.0.0", "--env", "staging", "--migration", "contract"], 3,
     "contract migration declared, but the app has no `migration`"),
])
def test_refusals_are_one_line_with_their_exit_code(config: Path, args: list[str], code: int, said: str) -> None:
    got, out = gl(config, *args)
    assert got == code and said in out, out
    errors = [line for line in out.splitlines() if not line.startswith("warning: created a new")]
    assert len(errors) == 1 and errors[0].startswith("error: ") and "Traceback" not in out
