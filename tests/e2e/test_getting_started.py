"""docs/getting-started.md, followed command by command on a lab as if its hosts were real ones: every
`graylift ...` line of the document's sh blocks runs, in order, from a working directory holding the config
(`./graylift.yaml`, the default), with an Ansible INI inventory written from the lab's hosts. The document's
commands are read from the file, so a changed document is a changed test."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest
import yaml

from graylift.lab import LabInfo
from graylift.lab.brownfield import install_by_script
from graylift.lab.inspect import host_versions
from tests.e2e.conftest import GRAYLIFT, lab_fixture

pytestmark = [pytest.mark.root, pytest.mark.lab, pytest.mark.slow]

APP = "pyapp"
DOC = Path(__file__).resolve().parents[2] / "docs" / "getting-started.md"
lab = lab_fixture(APP, hosts=4, name=f"gs{os.getpid() % 10000}")
PASSWORD = "correct horse battery staple"


def doc_commands() -> list[str]:
    """Every `graylift` command line of the document's sh blocks, in order, without comments or `sudo -u`."""
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", DOC.read_text(), re.S):
        for line in block.splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            line = re.sub(r"^sudo -u graylift ", "", line)
            if line.startswith("graylift "):
                commands.append(line)
    return commands


def ansible_inventory(info: LabInfo) -> str:
    """The lab's hosts as the Ansible INI inventory a team would already have: groups beta and stable."""
    lines = []
    for group in ("beta", "stable"):
        lines.append(f"[{group}]")
        lines += [f"{h.name} ansible_host={h.address} ansible_port=22 ansible_user=root zone={h.zone}"
                  for h in info.hosts if (h.group == "beta") == (group == "beta")]
    return "\n".join(lines) + "\n"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run(cwd: Path, command: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    argv = [*GRAYLIFT, *command.split()[1:]]
    return subprocess.run(argv, cwd=cwd, input=stdin, capture_output=True, text=True, timeout=300,
                          start_new_session=True,  # no terminal: a password prompt reads stdin
                          env=os.environ | {"COLUMNS": "200", "GRAYLIFT_LOG_DIR": str(cwd / "logs")})


def login(base: str, name: str, password: str) -> httpx.Client:
    client = httpx.Client(base_url=base, timeout=10)
    form = client.get("/login")
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
    assert csrf, form.text
    done = client.post("/login", data={"name": name, "password": password, "csrf_token": csrf.group(1)})
    assert done.status_code == 303, done.text
    return client


def test_the_getting_started_document_works_on_a_lab(lab: LabInfo, tmp_path: Path) -> None:
    commands = doc_commands()
    assert [c.split()[1] for c in commands][:3] == ["init", "check", "hosts"]  # the document's order
    scratch, work = tmp_path / "scratch", tmp_path / "controller"
    scratch.mkdir()
    work.mkdir()
    # Step 2 writes and checks an annotated config; the rest runs on the lab's (the one a team would write).
    config = yaml.safe_load(Path(lab.config_path).read_text())
    config["state"] = f"sqlite:///{work}/state.db"
    (work / "graylift.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    (work / "inventory.ini").write_text(ansible_inventory(lab))
    install_by_script(lab, APP, "1.0.0")  # the fleet runs 1.0.0, installed by another tool

    for command in commands:
        verb = command.split()[1]
        if verb == "init":
            done = run(scratch, command)
            assert done.returncode == 0 and (scratch / "graylift.yaml").is_file(), done.stdout + done.stderr
            continue
        done = run(work, command, stdin=f"{PASSWORD}\n{PASSWORD}\n" if verb == "users" else None)
        assert done.returncode == 0, f"`{command}` exited {done.returncode}: {done.stdout}{done.stderr}"
        if command.startswith("graylift hosts list"):
            assert all(h.name in done.stdout for h in lab.hosts)
        if command.startswith("graylift plan"):
            assert "preflight" in done.stdout
    assert set(host_versions(lab, APP).values()) == {"2.0.0"}  # the first release went everywhere

    # "graylift rollback pyapp --env prod works from this first release on"
    back = run(work, "graylift rollback pyapp --env prod --wait")
    assert back.returncode == 0, back.stdout + back.stderr
    assert set(host_versions(lab, APP).values()) == {"1.0.0"}

    # Step 6: the console (`graylift serve`), logged in as the admin the document adds.
    port = free_port()
    with (work / "serve.log").open("wb") as log:
        server = subprocess.Popen([*GRAYLIFT, "serve", "--port", str(port)], cwd=work, stdout=log,
                                  stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/login", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline and server.poll() is None, (work / "serve.log").read_text()
            time.sleep(0.3)
        admin = login(base, "admin", PASSWORD)
        try:
            overview = admin.get("/")
            assert overview.status_code == 200 and APP in overview.text
            releases = admin.get("/releases")
            assert releases.status_code == 200 and "2.0.0" in releases.text, releases.text
        finally:
            admin.close()
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
        shutil.rmtree(work / "logs", ignore_errors=True)
