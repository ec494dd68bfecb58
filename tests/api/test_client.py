"""The CLI through a server (`--server`): the same commands give the same output, and the server's rules
apply (a viewer's token cannot release; errors keep their messages and exit codes).

Until the CLI's `service()` asks :func:`graylift.client.remote_from_env` (the one-line hook in
docs/api.md), the test puts the remote service in its place itself."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from typer.testing import CliRunner

from graylift import cli
from graylift.cli import hosts as cli_hosts
from graylift.cli import releases as cli_releases
from graylift.client import RemoteGraylift
from graylift.client_options import take_server_option
from tests.api.conftest import APP, Server


@pytest.fixture
def run(server: Server, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Any]]:
    made: list[RemoteGraylift] = []

    def invoke(*args: str, user: str | None = "rel") -> Any:
        def service(config: Any) -> Any:
            if user is None:
                return server.gl  # the local service, over the same database
            remote = RemoteGraylift(server.url, server.tokens[user])
            made.append(remote)
            return remote

        monkeypatch.setattr(cli_releases, "service", service)
        monkeypatch.setattr(cli_hosts, "service", service)
        return CliRunner().invoke(cli.app, list(args), env={"COLUMNS": "200"})

    yield invoke
    for remote in made:
        remote.close()


def test_the_cli_through_a_server_releases_and_shows_the_same_as_locally(run: Callable[..., Any]) -> None:
    done = run("release", APP, "1.0.0", "--env", "test", "--wait")
    assert done.exit_code == 0, done.output
    assert "release #1: demo (none) -> 1.0.0 (test)" in done.output and "succeeded" in done.output
    assert "h8 done" in done.output  # the journal, followed live
    remote, local = run("history", APP, "--env", "test"), run("history", APP, "--env", "test", user=None)
    assert remote.exit_code == 0 and remote.output == local.output
    remote, local = run("status", "1"), run("status", "1", user=None)
    assert remote.output.splitlines()[:-1] == local.output.splitlines()[:-1]  # but for where the state lives:
    assert remote.output.splitlines()[-1] == "state: the graylift server"  # status shows it
    assert local.output.splitlines()[-1].startswith("state: sqlite:///")
    remote, local = run("status", "1", "-o", "json"), run("status", "1", "-o", "json", user=None)
    mine, theirs = json.loads(remote.output), json.loads(local.output)
    assert remote.exit_code == 0 and mine["state_db"] == "the graylift server"
    assert mine["release"] == theirs["release"] and len(mine["hosts"]) == len(theirs["hosts"]) == 8
    listed = run("hosts", "list", APP, "--env", "test")
    assert listed.exit_code == 0 and "h1" in listed.output and "10.0.0.8" in listed.output
    plan = run("plan", APP, "2.0.0", "--env", "test")
    assert plan.exit_code == 0, plan.output
    assert "1.0.0 -> 2.0.0" in plan.output and "8 host(s) and every backend checked" in plan.output


def test_the_servers_rules_and_messages_hold_for_the_cli(run: Callable[..., Any]) -> None:
    denied = run("release", APP, "1.0.0", "--env", "test", user="viewer")
    assert denied.exit_code == 3 and "viewer is viewer on demo (test); start needs developer" in denied.output
    assert run("release", APP, "1.0.0", "--env", "test", "--wait").exit_code == 0
    late = run("promote", "1")
    assert late.exit_code == 3 and "release #1 already succeeded; nothing to promote" in late.output
    bad = run("plan", APP, "9.9.9", "--env", "test")
    assert bad.exit_code == 3 and "preflight found" in bad.output and "9.9.9" in bad.output



def test_a_misspelt_app_through_a_server_is_answered_with_where_the_user_has_a_role(
        run: Callable[..., Any]) -> None:
    """The client checks no name itself (its config is not the server's). The server's answer to a name the
    user has no role on says where the user has one (a typo is plain), naming nothing of other users'."""
    local = run("history", "demo-typo", "--env", "test", user=None)
    assert local.exit_code == 2 and "unknown app 'demo-typo'" in local.output and APP in local.output
    remote = run("history", "demo-typo", "--env", "test")
    assert remote.exit_code == 3, remote.output
    assert " ".join(remote.output.split()) == ("error: rel has no role on demo-typo (test); view needs viewer "
                                               "(rel is releaser on demo (*))")
    assert "Traceback" not in remote.output and "does not load" not in remote.output


def test_server_option_becomes_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRAYLIFT_SERVER", "")  # recorded, so the values set below are removed afterwards
    assert take_server_option(["--server", "https://gl:8080", "status", "-e", "prod"]) == ["status", "-e", "prod"]
    assert os.environ["GRAYLIFT_SERVER"] == "https://gl:8080"
    assert take_server_option(["status", "--server=http://x"]) == ["status"]
    assert os.environ["GRAYLIFT_SERVER"] == "http://x"


def test_hosts_import_through_the_server_shows_the_changes_and_dry_run_stores_nothing(
        run: Callable[..., Any], tmp_path: Any) -> None:
    listed = run("hosts", "list", APP, "--env", "test", user=None)
    assert "h8" in listed.output
    path = tmp_path / "hosts.ini"
    path.write_text("[beta]\nh1 ansible_host=10.0.0.1\n[prod]\nh2 ansible_host=10.0.0.2 ansible_port=2222\n")
    dry = run("hosts", "import", APP, str(path), "--env", "test", "--dry-run", user="admin")
    assert dry.exit_code == 0, dry.output
    assert "- h8 " in dry.output and "6 removed" in dry.output and "(dry run: nothing stored)" in dry.output
    assert "h8" in run("hosts", "list", APP, "--env", "test", user=None).output
    done = run("hosts", "import", APP, str(path), "--env", "test", user="admin")
    assert done.exit_code == 0, done.output
    assert done.output.replace("would import", "imported").replace(" (dry run: nothing stored)", "") == dry.output \
        .replace("would import", "imported").replace(" (dry run: nothing stored)", "")
    assert "h8" not in run("hosts", "list", APP, "--env", "test", user=None).output


def test_hosts_import_through_the_server_cannot_remove_hosts_of_a_running_release(
        start_server: Callable[..., Server], tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    server = start_server(f"sqlite:///{tmp_path}/state.db", workers=False)  # nobody drives the release below
    hosts = server.gl.list_hosts(APP, "prod")
    rec = server.gl.store.create_release(app=APP, env="prod", kind="release", version="9.0", previous_version=None,
                                         plan={"batches": []}, config={}, started_by="test",
                                         host_runs=[(h, 1, None) for h in hosts])
    remote = RemoteGraylift(server.url, server.tokens["admin"])
    monkeypatch.setattr(cli_hosts, "service", lambda config: remote)
    path = tmp_path / "hosts.ini"
    path.write_text("[beta]\nh1 ansible_host=10.0.0.1\n")
    try:
        refused = CliRunner().invoke(cli.app, ["hosts", "import", APP, str(path), "--env", "prod"],
                                     env={"COLUMNS": "200"})
    finally:
        remote.close()
    assert refused.exit_code == 3  # refused by a rule: the running release uses those hosts
    assert f"release #{rec.id} of demo (prod) is pending and runs on h2, h3, h4, h5, h6, h7, h8: an import " \
           "cannot remove them" in " ".join(refused.output.split()), refused.output
    assert len(server.gl.list_hosts(APP, "prod")) == len(hosts)


def test_every_method_the_client_shares_with_the_service_takes_the_services_parameters() -> None:
    """The CLI calls the HTTP client where it calls the service (``--server``), and nothing types it as one: a
    parameter the service gained and the client lacks fails only when that path runs (the summary's
    ``journal(steps=, event=)`` did, on aa0556d). Every public method of both takes at least the service's."""
    import inspect

    from graylift.service import Graylift

    shared = [name for name, _ in inspect.getmembers(RemoteGraylift, inspect.isfunction)
              if not name.startswith("_") and hasattr(Graylift, name)]
    lacking = {}
    for name in shared:
        ours = inspect.signature(getattr(RemoteGraylift, name)).parameters
        theirs = inspect.signature(getattr(Graylift, name)).parameters
        if not any(p.kind is p.VAR_KEYWORD for p in ours.values()):
            missing = [p for p, spec in theirs.items() if p not in ours and spec.kind not in (spec.VAR_KEYWORD,
                                                                                               spec.VAR_POSITIONAL)]
            if missing:
                lacking[name] = missing
    assert len(shared) >= 20 and lacking == {}
