"""The CLI as a person under pressure and a pipeline use it (issue 9): user text printed literally, one line per
error with its documented exit code, JSON output, unknown names, emergency commands from the database alone,
where the state lives, and the conventions (-h, --version, -c FILE, release by APP --env ENV).

In process through Typer's CliRunner, over a SQLite state database in a temporary directory; a release is
recorded in it directly (its controller "alive": this test process), so no command hands it to a worker."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from graylift.cli import app
from graylift.core.model import Host
from graylift.core.plan import make_plan
from graylift.core.state import ReleaseState
from graylift.errors import EXIT_CODES
from graylift.service import Graylift

CONFIG = """
state: sqlite:///state.db
ssh: {known_hosts: known_hosts}
apps:
  order-service:
    package: {type: tar.gz, url: "http://127.0.0.1:9/{app}-{version}.{ext}", sha256_url: "{url}.sha256"}
    deploy: {dir: /srv/order}
    commands: {start: "sh {current}/bin/start", stop: "sh {current}/bin/stop"}
    health: {tcp_port: 8080}
    strategy: {batch: {size: 1}}
    envs:
      prod: {}
"""
TAGS = {"roles": "[web,api]", "note": "1.0[/x] [bold]loud[/bold]"}


@dataclass
class Site:
    dir: Path
    config: Path
    runner: CliRunner

    def run(self, *args: str) -> tuple[int, str, str]:
        # env: GRAYLIFT_CONFIG, which `-c` sets for the command, is put back as it was afterwards
        result = self.runner.invoke(app, ["-c", str(self.config), *args], env={"GRAYLIFT_CONFIG": None})
        assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
        return result.exit_code, result.stdout, result.stderr

    def gl(self) -> Graylift:
        return Graylift(self.config)


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Site]:
    monkeypatch.delenv("GRAYLIFT_DB", raising=False)
    monkeypatch.delenv("GRAYLIFT_SERVER", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no client file, no ~/.graylift
    config = tmp_path / "graylift.yaml"
    config.write_text(textwrap.dedent(CONFIG).lstrip())
    (tmp_path / "known_hosts").write_text("")
    gl = Graylift(config)
    hosts = [Host(f"web-{i}", "127.0.0.1", port=9, tags=TAGS if i == 1 else {}) for i in range(1, 5)]
    gl.import_hosts("order-service", "prod", hosts)
    gl.close()
    yield Site(tmp_path, config, CliRunner())


def record_release(site: Site, state: ReleaseState = ReleaseState.RUNNING) -> int:
    """A release of order-service 2.0 in prod, driven (as far as anyone can tell) by this process."""
    gl = site.gl()
    cfg = gl.config.app_for_env("order-service", "prod")
    hosts = gl.list_hosts("order-service", "prod")
    plan = make_plan(hosts, cfg.strategy_model())
    rec = gl.store.create_release(app="order-service", env="prod", kind="release", version="2.0[/x]",
                                  previous_version="1.0", plan=plan.to_dict(), config={"apps": {}},
                                  started_by="test", host_runs=[(h, plan.batch_of(h.name), None) for h in hosts])
    gl.store.claim(rec.id, f"{socket.gethostname()}:{os.getpid()}:test", 600)
    if state is not ReleaseState.PENDING:
        gl.store.transition(rec.id, ReleaseState.RUNNING)
    gl.close()
    return rec.id


def one_error(stderr: str, code: int, exit_code: int, *words: str) -> None:
    assert exit_code == code and code in EXIT_CODES, (exit_code, stderr)
    assert "Traceback" not in stderr
    lines = [ln for ln in stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, stderr
    for word in words:
        assert word in lines[0], lines[0]


# ---------------------------------------------------------------------------------------------- items 1 and 2


def test_user_text_is_printed_literally_never_as_markup(site: Site) -> None:
    code, out, err = site.run("hosts", "list", "order-service", "--env", "prod")
    assert code == 0, err
    assert "roles=[web,api]" in out and "1.0[/x] [bold]loud[/bold]" in out
    rid = record_release(site)
    code, out, err = site.run("status", str(rid))
    assert code == 0, err
    assert "-> 2.0[/x] (prod)" in out
    code, out, _ = site.run("history", "order-service", "--env", "prod")
    assert code == 0 and "2.0[/x]" in out


def test_an_error_quoting_brackets_keeps_them(site: Site) -> None:
    inventory = site.dir / "hosts.ini"
    inventory.write_text("[web\nh1\n")
    code, _, err = site.run("hosts", "import", "order-service", str(inventory), "--env", "prod")
    one_error(err, 2, code, "like [web], [web:vars] or [web:children]", "got '[web'")


@pytest.mark.parametrize(("args", "code", "words"), [
    (("promote", "abc"), 2, ("'abc' is not a release id",)),
    (("status", "99999999999999999999999"), 2, ("is not a release id",)),
    (("pause", "١٢"), 2, ("is not a release id",)),  # unicode digits are not an id
    (("status", "424242"), 2, ("release #424242 not found",)),
    (("abort", "order-service"), 2, ("not a release id", "--env")),
])
def test_ordinary_bad_input_is_one_line_with_its_exit_code(site: Site, args: tuple[str, ...], code: int,
                                                           words: tuple[str, ...]) -> None:
    exit_code, _, err = site.run(*args)
    one_error(err, code, exit_code, *words)


def test_init_into_a_missing_directory_or_onto_a_directory(site: Site) -> None:
    exit_code, _, err = site.run("init", str(site.dir / "nope" / "graylift.yaml"))
    one_error(err, 2, exit_code, "does not exist")
    exit_code, _, err = site.run("init", str(site.dir), "--force")
    one_error(err, 2, exit_code, "is a directory")
    target = site.dir / "new.yaml"
    exit_code, out, _ = site.run("init", str(target))
    assert exit_code == 0 and target.exists() and "wrote" in out
    exit_code, _, err = site.run("init", str(target))
    one_error(err, 2, exit_code, "exists; use --force")


# ---------------------------------------------------------------------------------------------- item 7


def test_json_output_of_status_history_hosts_and_check(site: Site) -> None:
    rid = record_release(site)
    code, out, _ = site.run("status", str(rid), "-o", "json")
    doc = json.loads(out)
    assert code == 0 and doc["release"]["id"] == rid and doc["release"]["version"] == "2.0[/x]"
    assert doc["release"]["state"] == "running" and len(doc["hosts"]) == 4
    assert doc["state_db"].endswith("state.db")
    code, out, _ = site.run("status", "--output", "json")
    assert [r["id"] for r in json.loads(out)["active"]] == [rid]
    code, out, _ = site.run("history", "order-service", "--env", "prod", "-o", "json")
    doc = json.loads(out)
    assert doc["current_version"] is None and [r["id"] for r in doc["releases"]] == [rid]
    code, out, _ = site.run("hosts", "list", "order-service", "--env", "prod", "-o", "json")
    hosts = json.loads(out)
    assert hosts[0] == {"name": "web-1", "address": "127.0.0.1", "port": 9, "user": "root", "group": "default",
                        "tags": TAGS, "in_service": True}
    code, out, err = site.run("check", "-o", "json")
    doc = json.loads(out)
    assert code == 0, err
    assert doc["ok"] and doc["apps"][0]["name"] == "order-service" and doc["apps"][0]["hosts"] == {"prod": 4}


def test_plan_json_and_a_refused_preflight_exit_3(site: Site) -> None:
    code, out, err = site.run("plan", "order-service", "2.0", "--env", "prod", "-o", "json")
    doc = json.loads(out)
    assert doc["batches"][0]["hosts"] == ["web-1"] and doc["problems"]
    one_error(err, 3, code, "preflight found")


def test_tables_are_ascii_and_errors_unwrapped_off_a_terminal(site: Site) -> None:
    code, out, _ = site.run("hosts", "list", "order-service", "--env", "prod")
    assert code == 0 and out.isascii() and "+-" in out
    long_app = "x" * 150
    code, _, err = site.run("history", long_app, "--env", "prod")
    one_error(err, 2, code, long_app)


def test_a_database_that_cannot_be_reached_exits_4(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRAYLIFT_DB", "postgresql+psycopg://nobody@127.0.0.1:9/none?connect_timeout=2")
    code, _, err = site.run("status")
    one_error(err, 4, code, "state database")


# ---------------------------------------------------------------------------------------------- item 4


@pytest.mark.parametrize("args", [
    ("hosts", "list", "order-svc", "--env", "prod"),
    ("history", "order-svc", "--env", "prod"),
    ("status", "order-svc", "--env", "prod"),
    ("pause", "order-svc", "--env", "prod"),
    ("plan", "order-svc", "--env", "prod"),
    ("hosts", "maintenance", "order-svc", "web-1", "--env", "prod"),
    ("hosts", "survey", "order-svc", "--env", "prod"),
    ("hosts", "maintenance", "web-1", "--app", "order-svc", "--env", "prod"),  # the older spelling
    ("hosts", "survey", "--app", "order-svc", "--env", "prod"),
])
def test_an_unknown_app_is_named_with_the_known_ones(site: Site, args: tuple[str, ...]) -> None:
    code, _, err = site.run(*args)
    one_error(err, 2, code, "unknown app 'order-svc'; known apps: order-service")


def test_the_app_comes_first_in_every_hosts_command_and_the_older_app_option_still_works(site: Site) -> None:
    inventory = site.dir / "two.yaml"
    inventory.write_text("hosts:\n  - {name: web-1, address: 10.0.0.1}\n  - {name: web-2, address: 10.0.0.2}\n")
    code, out, err = site.run("hosts", "import", "order-service", str(inventory), "--env", "test")
    assert code == 0 and "imported 2 host(s) for order-service (test)" in out, err
    code, out, err = site.run("hosts", "maintenance", "order-service", "web-2", "--env", "test")
    assert code == 0 and "web-2: in maintenance" in out, err
    code, out, err = site.run("hosts", "list", "order-service", "--env", "test", "-o", "json")
    assert code == 0, err
    assert {h["name"]: h["in_service"] for h in json.loads(out)} == {"web-1": True, "web-2": False}
    # a script written for the older `X --app APP` spelling does the same
    code, out, err = site.run("hosts", "maintenance", "web-2", "--app", "order-service", "--env", "test", "--off")
    assert code == 0 and "web-2: in service" in out, err
    code, out, err = site.run("hosts", "list", "--app", "order-service", "--env", "test", "-o", "json")
    assert code == 0 and all(h["in_service"] for h in json.loads(out)), err
    code, _, err = site.run("hosts", "list", "order-service", "--app", "order-service", "--env", "test")
    one_error(err, 2, code, "name the app once: `graylift hosts list APP --env ENV`")
    code, _, err = site.run("hosts", "clear", "order-service", "--env", "test")
    one_error(err, 2, code, "missing argument: `graylift hosts clear APP HOST --env ENV`")


def test_an_unknown_env_is_named_with_the_known_ones(site: Site) -> None:
    code, _, err = site.run("hosts", "list", "order-service", "--env", "prd")
    one_error(err, 2, code, "unknown env 'prd' for order-service; known envs: prod")


# ---------------------------------------------------------------------------------------------- item 3


@pytest.mark.parametrize("breakage", ["yaml", "typo", "absent"])
def test_emergency_commands_work_from_the_database_alone(site: Site, breakage: str,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    rid = record_release(site)
    if breakage == "yaml":
        site.config.write_text(site.config.read_text() + "\n  other: [unclosed\n")
    elif breakage == "typo":
        site.config.write_text(site.config.read_text().replace("strategy:", "stratgey:"))
    else:
        monkeypatch.setenv("GRAYLIFT_DB", f"sqlite:///{site.dir / 'state.db'}")
        site.config.unlink()
    code, out, err = site.run("status", str(rid))
    assert code == 0 and f"release #{rid}" in out, err
    code, out, err = site.run("status", "order-service", "--env", "prod", "-o", "json")
    assert code == 0 and json.loads(out)["release"]["id"] == rid, err
    if breakage != "absent":  # the app's name was checked against the database, the config being unreadable
        assert "working from the state database alone" in err
    code, _, err = site.run("promote", "order-service", "--env", "prod")
    one_error(err, 3, code, "only a baking or baked canary can be promoted")  # a rule, not a broken config
    for action in ("pause", "abort"):
        code, out, err = site.run(action, "order-service", "--env", "prod")
        assert code == 0 and f"{action} requested" in out, err
    code, out, err = site.run("rollback", "order-service", "--env", "prod")
    assert code == 0 and f"release #{rid}" in out, err
    assert site.gl().store.get_release(rid).requested is not None or site.gl().store.get_release(rid).state in (
        ReleaseState.ROLLING_BACK, ReleaseState.RUNNING)


def test_a_broken_config_still_blocks_what_needs_it(site: Site) -> None:
    site.config.write_text(site.config.read_text() + "\n  other: [unclosed\n")
    code, _, err = site.run("plan", "order-service", "2.0", "--env", "prod")
    one_error(err, 2, code)


# ---------------------------------------------------------------------------------------------- item 6


def test_where_the_state_lives(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    code, out, err = site.run("status")
    assert code == 0 and f"state: sqlite:///{site.dir / 'state.db'}" in out and "new" not in err
    monkeypatch.setenv("GRAYLIFT_DB", f"sqlite:///{site.dir / 'typo.db'}")
    code, out, err = site.run("status")
    assert code == 0 and "created a new, empty state database" in err and "typo.db" in err
    monkeypatch.setenv("GRAYLIFT_DB", "mysql://graylift@127.0.0.1/graylift")
    code, _, err = site.run("status")
    one_error(err, 2, code, "only SQLite", "PostgreSQL", "are supported")


def test_a_password_in_the_state_url_is_refused_even_by_status(site: Site) -> None:
    site.config.write_text("state: postgresql+psycopg://graylift:s3cret@127.0.0.1:9/graylift\napps: {}\n")
    code, out, err = site.run("status")
    one_error(err, 2, code, "a password in the state URL ends up in logs")
    assert "s3cret" not in out + err


def test_the_default_state_database_is_shared_when_run_as_root(monkeypatch: pytest.MonkeyPatch) -> None:
    from graylift.config import default_state_db

    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert default_state_db() == Path("/var/lib/graylift/state.db")
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    expected = Path("/var/lib/graylift/state.db") if Path("/var/lib/graylift").is_dir() else \
        Path("~/.graylift/state.db").expanduser()
    assert default_state_db() == expected


# ---------------------------------------------------------------------------------------------- item 9


def test_conventions(site: Site) -> None:
    runner = CliRunner()
    top = runner.invoke(app, ["-h"])
    assert top.exit_code == 0 and "-c, --config FILE" in top.stdout and "--install-completion" in top.stdout
    assert "Exit codes" in top.stdout
    version = runner.invoke(app, ["--version"])
    assert version.exit_code == 0 and version.stdout.startswith("graylift ")
    for command in ("status", "promote", "release", "check", "history", "plan"):
        text = runner.invoke(app, [command, "--help"]).stdout
        assert "<bool>" not in text and "[OPTIONS]" in text, text
    assert "release [OPTIONS] {APP} {VERSION}" in runner.invoke(app, ["release", "-h"]).stdout
    rid = record_release(site)
    code, out, _ = site.run("pause", "order-service", "--env", "prod")
    assert code == 0 and f"release #{rid}: pause requested" in out


def test_usage_errors_are_one_line_and_exit_2(site: Site) -> None:
    result = CliRunner().invoke(app, ["status", "--bogus"])
    assert result.exit_code == 2 and "Error: No such option: --bogus" in result.stderr
    assert "─" not in result.stderr  # no box


# ---------------------------------------------------------------------------------------------- item 8


def test_check_checks_files_variables_the_database_and_the_half_rule(site: Site,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GRAYLIFT_FUZZ_TOKEN", raising=False)
    text = site.config.read_text().replace("ssh: {known_hosts: known_hosts}",
                                           "ssh: {known_hosts: known_hosts, key: no-such-key}")
    text = text.replace("apps:", "repositories:\n  local: {local_dir: no-such-dir}\n"
                        "  remote: {url: 'http://127.0.0.1:9/{app}-{version}.{ext}', sha256_url: '{url}.sha256', "
                        "token_env: GRAYLIFT_FUZZ_TOKEN}\napps:")
    site.config.write_text(text.replace("batch: {size: 1}", "batch: {size: 2}"))  # 2 of 4 hosts: half
    code, out, err = site.run("check", "-o", "json")
    problems = json.loads(out)["problems"]
    assert code == 2 and not json.loads(out)["ok"], err
    assert any("ssh.key" in p and "no-such-key does not exist" in p for p in problems), problems
    assert any("local_dir" in p and "no-such-dir does not exist" in p for p in problems), problems
    assert any("GRAYLIFT_FUZZ_TOKEN is not set" in p for p in problems), problems
    assert any("order-service (prod)" in p and "50%" in p for p in problems), problems
    assert err.count("error:") == 1
    monkeypatch.setenv("GRAYLIFT_DB", "sqlite:////nonexistent-graylift-dir/x.db")  # not made: not graylift's place
    code, out, _ = site.run("check", "-o", "json")
    assert any(p.startswith("state database:") for p in json.loads(out)["problems"]), out


def test_check_refuses_a_config_without_apps(site: Site) -> None:
    site.config.write_text("state: sqlite:///state.db\napps: {}\n")
    code, _, err = site.run("check")
    one_error(err, 2, code, "problem(s)")
    assert "no app under `apps:`" in err


def command_paths() -> list[list[str]]:
    import typer

    root = typer.main.get_command(app)
    paths: list[list[str]] = []

    def walk(group: Any, prefix: list[str]) -> None:
        ctx = group.make_context("graylift", [], resilient_parsing=True)
        for name in group.list_commands(ctx):
            sub = group.get_command(ctx, name)
            paths.append([*prefix, name])
            if hasattr(sub, "list_commands"):
                walk(sub, [*prefix, name])

    walk(root, [])
    return paths


def test_every_usage_line_is_in_one_style() -> None:
    runner, paths = CliRunner(), command_paths()
    assert ["hosts", "list"] in paths and ["freeze", "add"] in paths and len(paths) > 30
    for path in paths:
        result = runner.invoke(app, [*path, "-h"])
        usage = result.stdout.splitlines()[0]
        assert result.exit_code == 0 and re.fullmatch(
            r"Usage: \S+( [a-z-]+)+ \[OPTIONS\]( \{[A-Z_]+\}| \[[A-Z_]+\])*( COMMAND \[ARGS\]\.\.\.)?", usage), usage
        assert "<bool>" not in result.stdout and "BOOLEAN" not in result.stdout, path


# --- a server named (GRAYLIFT_SERVER, --server, the client file) ----------------------------------------------

LOCAL_ONLY = [("users", "list"), ("tokens", "list"), ("policy", "list"), ("freeze", "list"), ("schedules",),
              ("unschedule", "1"), ("doctor", "order-service", "--env", "prod"), ("check",)]


@pytest.mark.parametrize("args", LOCAL_ONLY, ids=" ".join)
def test_a_command_on_the_state_database_with_a_server_named_says_to_run_it_where_that_is(
        site: Site, monkeypatch: pytest.MonkeyPatch, args: tuple[str, ...]) -> None:
    """Found by typing the CLI's service as either: `users list`, `tokens list`, `policy list` and `freeze list`
    failed with "unexpected AttributeError: 'RemoteGraylift' object has no attribute 'store'"."""
    monkeypatch.setenv("GRAYLIFT_SERVER", "http://127.0.0.1:9")
    monkeypatch.setenv("GRAYLIFT_TOKEN", "t0ken-of-the-cli")
    code, out, err = site.run(*args)
    assert code == 2, (code, out, err)
    assert len(err.strip().splitlines()) == 1 and "without --server" in err, err
    assert "unexpected" not in err and "Traceback" not in out + err


def _cli(site: Site, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "GRAYLIFT_SERVER": "http://127.0.0.1:9", "GRAYLIFT_TOKEN": "t0ken-of-the-cli",
           "HOME": str(site.dir / "home")}
    return subprocess.Popen([sys.executable, "-m", "graylift", "-c", str(site.config), *args], cwd=site.dir,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.mark.parametrize("args", [("worker", "--interval", "0.2"), ("serve", "--port", "0", "--no-auth")],
                         ids=["worker", "serve"])
def test_serve_and_worker_are_the_server_and_ask_no_other(site: Site, args: tuple[str, ...]) -> None:
    """With a server named for the CLI on the same machine, `graylift worker` died with a traceback
    (no `start_due_schedules` on the HTTP client) and `graylift serve` with an unexpected AttributeError."""
    if args[0] == "serve":
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            args = ("serve", "--port", str(s.getsockname()[1]), "--no-auth")
    proc = _cli(site, *args)
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first.startswith(f"graylift {args[0]}"), first + proc.stdout.read() if proc.poll() is not None \
            else first
        proc.send_signal(signal.SIGTERM)
        rest = proc.communicate(timeout=30)[0]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "Traceback" not in first + rest and "unexpected" not in first + rest, first + rest


def test_users_add_with_standard_input_ended_says_how_to_give_the_password(site: Site) -> None:
    """Run with stdin at its end (a script, `< /dev/null`), it printed a getpass warning and "Aborted!" (exit 1);
    a password piped in is read as typed (tests/e2e/test_getting_started.py does so)."""
    code, out, err = site.run("users", "add", "bob", "--role", "admin")
    assert code == 2 and err.strip() == ("error: no password given (standard input ended): type it at the prompt, "
                                         "or use --password-stdin (or --no-password for a user of API tokens "
                                         "only)"), (code, out, err)
    result = site.runner.invoke(app, ["-c", str(site.config), "users", "add", "ann", "--role", "admin"],
                                input="s3cret-pass\ns3cret-pass\n", env={"GRAYLIFT_CONFIG": None})
    assert result.exit_code == 0, result.output
    users = site.run("users", "list")[1]
    assert "ann" in users and "bob" not in users
