"""`graylift hosts import` again over a real SQLite store: what changes is shown, maintenance flags stay,
`--dry-run` stores nothing, and hosts a running release uses cannot be removed."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from graylift import cli
from graylift.cli import hosts as cli_hosts
from graylift.core.model import Host
from graylift.service import Graylift

APP, ENV = "shop", "prod"
FIRST = """\
[web]
web-1 ansible_host=10.213.0.1 zone=a
web-2 ansible_host=10.213.0.2 zone=b
web-3 ansible_host=10.213.0.3 zone=c
"""
SECOND = """\
[web]
web-1 ansible_host=10.213.0.1 zone=a
web-2 ansible_host=10.213.0.2 zone=b ansible_port=2222
web-4 ansible_host=10.213.0.4 zone=d
"""


@pytest.fixture
def gl(tmp_path: Path) -> Graylift:
    config = tmp_path / "graylift.yaml"
    config.write_text("apps:\n  shop:\n    package: {type: war, local_dir: /tmp}\n    deploy: {dir: /srv/shop}\n"
                      "    commands: {start: bin/start, stop: bin/stop}\n    health: {none: true}\n")
    service = Graylift(config, db_url=f"sqlite:///{tmp_path / 'state.db'}")
    yield service  # type: ignore[misc]
    service.close()


@pytest.fixture
def run(gl: Graylift, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Any]:
    monkeypatch.setattr(cli_hosts, "service", lambda config: gl)

    def invoke(text: str, *flags: str) -> Any:
        path = tmp_path / "hosts.ini"
        path.write_text(text)
        return CliRunner().invoke(cli.app, ["hosts", "import", APP, str(path), "--env", ENV, *flags],
                                  env={"COLUMNS": "200"})

    return invoke


def stored(gl: Graylift) -> dict[str, tuple[int, bool]]:
    return {h.name: (h.port, h.in_service) for h in gl.list_hosts(APP, ENV)}


def test_reimport_shows_changes_and_keeps_maintenance(gl: Graylift, run: Callable[..., Any]) -> None:
    first = run(FIRST)
    assert first.exit_code == 0, first.output
    assert "imported 3 host(s) for shop (prod)" in first.output and "3 added, 0 removed" in first.output
    gl.set_maintenance(APP, ENV, "web-1", in_service=False)

    dry = run(SECOND, "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert dry.output.splitlines() == [
        "+ web-4 root@10.213.0.4:22 group web",
        "- web-3 root@10.213.0.3:22 group web",
        "~ web-2: port 22 -> 2222",
        "= web-1: stays in maintenance (`graylift hosts maintenance web-1 --off` puts it back)",
        f"would import 3 host(s) for shop (prod) from {Path(gl.config_path).parent / 'hosts.ini'}: "
        "1 added, 1 removed, 1 changed, 1 unchanged (dry run: nothing stored)",
    ]
    assert stored(gl) == {"web-1": (22, False), "web-2": (22, True), "web-3": (22, True)}

    done = run(SECOND)
    assert done.exit_code == 0, done.output
    assert "imported 3 host(s)" in done.output and "- web-3" in done.output
    assert stored(gl) == {"web-1": (22, False), "web-2": (2222, True), "web-4": (22, True)}
    again = run(SECOND)
    assert again.output.splitlines()[0].startswith("= web-1: stays in maintenance")
    assert "0 added, 0 removed, 0 changed, 3 unchanged" in again.output


def test_hosts_of_a_running_release_cannot_be_removed(gl: Graylift, run: Callable[..., Any]) -> None:
    assert run(FIRST).exit_code == 0
    hosts = gl.list_hosts(APP, ENV)
    rec = gl.store.create_release(app=APP, env=ENV, kind="release", version="2.0", previous_version="1.0", plan={},
                                  config={}, started_by="test", host_runs=[(h, 1, "1.0") for h in hosts])
    refused = run(SECOND)
    assert refused.exit_code == 3  # refused by a rule: the running release uses those hosts
    assert " ".join(refused.output.split()) == (
        f"error: release #{rec.id} of shop (prod) is pending and runs on web-3: an import cannot remove them; "
        "let the release finish (or abort it), then import again")
    assert stored(gl) == {"web-1": (22, True), "web-2": (22, True), "web-3": (22, True)}
    kept = FIRST + "web-5 ansible_host=10.213.0.5\n"  # adding hosts meanwhile is fine
    assert run(kept).exit_code == 0
    assert "web-5" in stored(gl)
    gl.store.finish_release(rec.id, "aborted", "test")
    assert run(SECOND).exit_code == 0
    assert sorted(stored(gl)) == ["web-1", "web-2", "web-4"]


def test_the_service_keeps_flags_for_hosts_given_directly_too(gl: Graylift) -> None:
    gl.import_hosts(APP, ENV, [Host("a", "10.0.0.1"), Host("b", "10.0.0.2")])
    gl.set_maintenance(APP, ENV, "b", in_service=False)
    diff = gl.import_hosts(APP, ENV, [Host("a", "10.0.0.1"), Host("b", "10.0.0.2")])
    assert diff.kept_maintenance == ("b",) and stored(gl)["b"] == (22, False)


def test_an_unknown_app_is_refused_not_imported(gl: Graylift, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli_hosts, "service", lambda config: gl)
    path = tmp_path / "hosts.ini"
    path.write_text(FIRST)
    done = CliRunner().invoke(cli.app, ["hosts", "import", "shopp", str(path), "--env", ENV])
    assert done.exit_code == 2 and "unknown app 'shopp'; known apps: shop" in done.output
    assert gl.list_hosts("shopp", ENV) == []
