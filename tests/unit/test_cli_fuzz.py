"""The CLI fuzzed (issue 8 part 5, issue 9): random commands, options and values (brackets, markup, control
characters, unicode, huge numbers, paths that do not exist) and random config and inventory files (broken YAML,
garbage bytes, huge numbers, directories, empty files) through Typer's CliRunner, in process.

Every run must end with a documented exit code, no traceback, no "unexpected" error, and a failure must say
so in exactly one ``error:`` line (click's usage errors: one ``Error:`` line). GRAYLIFT_FUZZ_RUNS sets the number
of runs (default 2000; `GRAYLIFT_FUZZ_RUNS=10000` for the full run), GRAYLIFT_FUZZ_SEED the seed.

Releases are never driven here: ``drive`` and ``hand_off`` are replaced by stand-ins that only record the call
(the fuzz is about the command line; workers have their own tests). A plan's preflight, a survey and the doctor
really run, against 127.0.0.1:9 (nothing listens there), so they are drawn rarely.
"""

from __future__ import annotations

import os
import random
import socket
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from tests.unit.test_cli import CONFIG  # the same small valid config both start from
from typer.testing import CliRunner

from graylift.cli import app
from graylift.core.model import Host
from graylift.core.plan import make_plan
from graylift.errors import EXIT_CODES
from graylift.service import Graylift
from graylift.service.workers import WorkerService

RUNS = int(os.environ.get("GRAYLIFT_FUZZ_RUNS", "2000"))
SEED = int(os.environ.get("GRAYLIFT_FUZZ_SEED", "20261202"))
APP, ENV = "order-service", "prod"
WEIRD = ["[/x]", "[bold]x[/bold]", "[web,api]", "[", "]", "[/]", "\x1b[31mred", "a\tb", "\x7f", "line\nbreak",
         "ünïcödé", "订单服务", "🚀", "​", "‮rtl", "-", "--", "---x", "-x", "'", '"', "`id`", "$(id)", "%s",
         "{app}", "..", "../../etc/passwd", "/", " ", "", "a" * 300, "99999999999999999999999", "-1", "0", "1e309",
         "nan", "0x10", "١٢", "007", "prod", "order-svc", APP, ENV, "web-1", "2.0", "1.0[/x]", "\r"]
COMMANDS: list[tuple[int, list[str]]] = [  # (weight, the command's words)
    (12, ["status"]), (6, ["history"]), (8, ["hosts", "list"]), (3, ["hosts", "maintenance"]),
    (3, ["hosts", "clear"]), (6, ["hosts", "import"]), (8, ["check"]), (3, ["init"]), (5, ["promote"]),
    (5, ["pause"]), (5, ["abort"]), (3, ["resume"]), (3, ["retry"]), (3, ["rollback"]), (1, ["plan"]),
    (1, ["release"]), (2, ["policy", "list"]), (2, ["freeze", "add"]), (2, ["freeze", "list"]),
    (2, ["tokens", "list"]), (1, ["doctor"]), (1, ["hosts", "survey"]), (4, []), (2, ["nonsense"]),
    (2, ["--version"]), (2, ["-h"]),
]
OPTIONS = ["--env", "-e", "--app", "--output", "-o", "--to", "--force", "--off", "--watch", "--version", "--from",
           "--until", "--reason", "--user", "--bogus", "-c", "--config", "-h"]


def config_texts(good: str) -> list[bytes]:
    return [good.encode(), b"", b"apps: [unclosed\n", b"\x00\xff\xfe garbage", b"- a\n- b\n", b"apps: 7\n",
            good.replace("size: 1", "size: 100000000000000000000000000000").encode(),
            good.replace("size: 1", "size: -1").encode(), good.replace("prod: {}", "'[/x]': {}").encode(),
            good.replace("order-service:", "'order[/x]':").encode(), good.replace("state:", "stat:").encode(),
            b"state: mysql://x@127.0.0.1/db\napps: {}\n", b"state: sqlite:////nonexistent/dir/x.db\napps: {}\n",
            b"apps:\n  a:\n    package: {type: \"\x1b[31m\"}\n", "apps:\n  订单: {}\n".encode(),
            good.replace("tcp_port: 8080", "tcp_port: 99999999999").encode(), b"&a [*a, *a]\n",
            b"state: sqlite:///state.db\napps: {}\n"]


def inventory_texts() -> list[bytes]:
    return [b"[web\nh1\n", b"[web]\nh1 ansible_host=127.0.0.1 ansible_port=99999999999\n", b"hosts: [1, 2\n",
            b"hosts:\n  - {name: '[/x]', address: 127.0.0.1}\n", b"\x00\x01\x02", b"", b"[web]\n\x1b[31m\n",
            "[web]\nh\u00e9 roles=[web,api]\n".encode(), b"all:\n  hosts:\n    h1: {ansible_port: 1e309}\n"]


def site(tmp: Path) -> dict[str, Any]:
    good = textwrap.dedent(CONFIG).lstrip()
    (tmp / "known_hosts").write_text("")
    main = tmp / "graylift.yaml"
    main.write_text(good)
    gl = Graylift(main)
    hosts = [Host(f"web-{i}", "127.0.0.1", port=9, tags={"roles": "[web,api]"}) for i in range(1, 5)]
    gl.import_hosts(APP, ENV, hosts)
    cfg = gl.config.app_for_env(APP, ENV)
    plan = make_plan(hosts, cfg.strategy_model())
    rec = gl.store.create_release(app=APP, env=ENV, kind="release", version="2.0[/x]", previous_version="1.0",
                                  plan=plan.to_dict(), config={"apps": {}}, started_by="fuzz",
                                  host_runs=[(h, plan.batch_of(h.name), None) for h in hosts])
    gl.store.claim(rec.id, f"{socket.gethostname()}:{os.getpid()}:fuzz", 600)
    gl.close()
    configs = [main]
    for i, text in enumerate(config_texts(good)):
        path = tmp / f"config-{i}.yaml"
        path.write_bytes(text)
        configs.append(path)
    inventories = []
    for i, text in enumerate(inventory_texts()):
        path = tmp / f"inventory-{i}{'.ini' if i % 2 == 0 else '.yaml'}"
        path.write_bytes(text)
        inventories.append(path)
    return {"configs": [*configs, tmp / "missing.yaml", tmp], "inventories": [*inventories, tmp / "missing.ini", tmp],
            "release": str(rec.id), "tmp": tmp}


# Well-formed command lines: each slot is filled with a sensible value or, half the time, a weird one.
SHAPES = [
    ["status", "REF?", "--env?", "OUT?"], ["history", "APP", "--env", "ENV", "OUT?"],
    ["hosts", "list", "APP", "--env", "ENV", "OUT?"],
    ["hosts", "import", "APP", "INV", "--env", "ENV"],
    ["hosts", "maintenance", "APP", "HOST", "--env", "ENV", "--off?"], ["check", "OUT?"],
    ["promote", "REF", "--env?"], ["pause", "REF", "--env?"], ["abort", "REF", "--env?"], ["retry", "REF", "--env?"],
    ["resume", "REF", "--env?"], ["rollback", "APP", "--env", "ENV"], ["init", "PATH", "--force?"],
    ["plan", "APP", "VERSION", "--env", "ENV", "OUT?"], ["doctor", "APP?", "--env?", "OUT?"],
    ["hosts", "survey", "APP", "--env", "ENV"],
    ["freeze", "add", "--from", "TIME", "--until", "TIME", "--reason", "WORD"],
]


def draw_shape(rng: random.Random, s: dict[str, Any]) -> list[str]:
    sensible: dict[str, Callable[[], str]] = {
        "REF": lambda: rng.choice([s["release"], APP]), "APP": lambda: APP, "ENV": lambda: ENV, "HOST": lambda: "web-1",
        "INV": lambda: str(rng.choice(s["inventories"])), "PATH": lambda: str(s["tmp"] / "new.yaml"),
        "VERSION": lambda: "2.0", "TIME": lambda: "2030-01-01T00:00Z", "WORD": lambda: "fuzz",
    }
    args: list[str] = []
    for slot in rng.choice(SHAPES):
        optional = slot.endswith("?")
        slot = slot.rstrip("?")
        if optional and rng.random() < 0.5:
            continue
        if slot == "OUT":
            args += ["-o", rng.choice(["json", "text", "yaml", "[/x]"])]
        elif slot == "--env" and optional:
            args += ["--env", rng.choice([ENV, "prd", "[/x]"])]
        elif slot in sensible:
            args.append(sensible[slot]() if rng.random() < 0.5 else rng.choice(WEIRD))
        else:
            args.append(slot)
    return args


def draw_args(rng: random.Random, s: dict[str, Any]) -> list[str]:
    if rng.random() < 0.5:
        args = draw_shape(rng, s)
        return ["-c", str(rng.choice(s["configs"])), *args] if rng.random() < 0.3 else args
    weights = [w for w, _ in COMMANDS]
    words = list(rng.choices([c for _, c in COMMANDS], weights)[0])
    values: list[Callable[[], str]] = [
        lambda: rng.choice(WEIRD), lambda: s["release"], lambda: APP, lambda: ENV, lambda: "json", lambda: "text",
        lambda: str(rng.choice(s["inventories"])), lambda: str(rng.choice(s["configs"])),
        lambda: str(s["tmp"] / rng.choice(["new.yaml", "nope/new.yaml", "", "[x].yaml"])),
        lambda: str(rng.randint(-2**70, 2**70)), lambda: "".join(chr(rng.randint(1, 0x2FFF)) for _ in range(5)),
    ]
    args = words[:]
    for _ in range(rng.randint(0, 6)):
        if rng.random() < 0.45:
            args.append(rng.choice(OPTIONS))
        value = rng.choice(values)()
        args.append(value.replace("\x00", ""))
    if rng.random() < 0.6:
        args = ["-c", str(rng.choice(s["configs"])), *args]
    return args


def verdict(args: list[str], exit_code: int, stdout: str, stderr: str, exception: BaseException | None) -> str | None:
    """Why this run is wrong, or None."""
    if exception is not None and not isinstance(exception, SystemExit):
        return f"raised {type(exception).__name__}: {exception}"
    if exit_code not in EXIT_CODES or exit_code == 130:
        return f"undocumented exit code {exit_code}"
    text = stdout + stderr
    if "Traceback" in text or "error: unexpected " in stderr:
        return "a traceback or an unexpected error"
    if exit_code == 2 and "Commands:" in text and "Usage:" in text:
        return None  # a group named without a command shows its help
    if exit_code == 1 and "doctor" in args and ("not as they should be" in stdout or stdout.startswith("[")):
        return None  # the doctor found hosts to put right: its report (text or JSON) is the answer
    if exit_code != 0:
        lines = [ln for ln in stderr.splitlines() if ln.startswith(("error:", "Error:"))]
        if len(lines) != 1:
            return f"{len(lines)} error lines"
    return None


@pytest.fixture
def no_workers(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    handed: list[int] = []

    def hand_off(self: WorkerService, release_id: int) -> Path:
        handed.append(release_id)
        return Path("/dev/null")

    def drive(self: WorkerService, release_id: int, on_entry: Any = None) -> Any:
        return self.store.get_release(release_id)

    monkeypatch.setattr(WorkerService, "hand_off", hand_off)
    monkeypatch.setattr(WorkerService, "drive", drive)
    monkeypatch.setattr(WorkerService, "follow", lambda self, rid, on_entry, **_: self.store.get_release(rid))
    return handed


def test_no_input_gives_a_traceback_or_an_undocumented_exit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            no_workers: list[int]) -> None:
    for name in ("GRAYLIFT_DB", "GRAYLIFT_SERVER", "GRAYLIFT_CONFIG", "GRAYLIFT_DEBUG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    s = site(tmp_path)
    rng, runner = random.Random(SEED), CliRunner()
    failures: list[str] = []
    codes: dict[int, int] = {}
    for i in range(RUNS):
        args = draw_args(rng, s)
        result = runner.invoke(app, args, env={"GRAYLIFT_CONFIG": None})
        codes[result.exit_code] = codes.get(result.exit_code, 0) + 1
        why = verdict(args, result.exit_code, result.stdout, result.stderr, result.exception)
        if why:
            failures.append(f"run {i}: {args!r}: {why}\n{result.stderr[-600:]}")
    print(f"{RUNS} runs (seed {SEED}), exit codes {dict(sorted(codes.items()))}")
    assert not failures, f"{len(failures)} of {RUNS} runs went wrong; the first:\n" + "\n".join(failures[:5])
    assert len(codes) >= 3  # the fuzz reaches successes, usage errors and refusals, not one path
