"""Differential test: every inventory in corpus/ gives graylift what it gives ansible-core, or a clear refusal.

The oracle is ``ansible-inventory -i FILE --list`` (ansible-core, a test-only dependency; ansible_many.py runs
the command's own main for every file after one import, and the last test runs the real executable). For each host
Ansible lists, graylift must import the same host with the same address, port, user and variables (the
ssh plugin's choice: ``ansible_ssh_host``/``_port``/``_user`` over ``ansible_host``/``_port``/``_user``; no
user is graylift's default, root), or refuse the whole file with one line that starts with the file and
line and names the feature. A file Ansible cannot read must be refused too. Each corpus file starts with
``# expect: agree`` or ``# expect: refuse TEXT`` (TEXT is in graylift's message; after a ``#!`` line, the
second line); no header means agree.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

from graylift.adapters.inventory.hostfile import load_hosts_file
from graylift.core.hosts import parse_flag, tag_value
from graylift.core.model import Host
from graylift.errors import InventoryError

pytestmark = pytest.mark.slow

CORPUS = Path(__file__).parent / "corpus"
ANSIBLE_INVENTORY = Path(sys.executable).parent / "ansible-inventory"
ANSIBLE_CFG = """\
[inventory]
enable_plugins = auto, yaml, ini
unparsed_is_failed = True
any_unparsed_is_failed = True
"""
View = dict[str, tuple[str, int, str, bool, dict[str, str]]]  # name -> address, port, user, in service, tags


def corpus() -> list[Path]:
    """Every file of corpus/; a directory is one inventory, its ``hosts`` file (with group_vars/ beside it)."""
    return sorted(p / "hosts" if p.is_dir() else p for p in CORPUS.iterdir())


def expectation(path: Path) -> tuple[str, str]:
    head = path.read_text().splitlines()[:2]  # the first line, or the second after a #! line
    match = next(filter(None, (re.match(r"# expect: (agree|refuse)\s*(.*)", line) for line in head)), None)
    return (match.group(1), match.group(2).strip()) if match else ("agree", "")


def run_many(command: str, files: list[Path], home: Path) -> list[tuple[int, str, str]]:
    """(exit code, stdout, stderr) of the ansible command for each file (see ansible_many.py)."""
    out = Path(tempfile.mkdtemp(prefix=command, dir=home))
    env = os.environ | {"LC_ALL": "C.UTF-8", "ANSIBLE_CONFIG": str(home / "ansible.cfg"), "ANSIBLE_HOME": str(home),
                        "ANSIBLE_NOCOLOR": "1", "ANSIBLE_SSH_EXECUTABLE": "/bin/false"}
    subprocess.run([sys.executable, str(Path(__file__).parent / "ansible_many.py"), command, str(out),
                    *map(str, files)], env=env, timeout=600, check=True)
    return [(int((out / f"{i}.rc").read_text()), (out / f"{i}.out").read_text(), (out / f"{i}.err").read_text())
            for i in range(len(files))]


def hostvars_of(code: int, stdout: str, stderr: str) -> dict[str, Any] | str:
    """Ansible's hostvars of every host it lists, or its error text when it cannot read the file."""
    if code != 0:
        return stderr.strip() or f"exit {code}"
    listing = json.loads(stdout)
    return {name: listing["_meta"]["hostvars"].get(name, {}) for name in _hosts_in_groups(listing)}


def _hosts_in_groups(listing: dict[str, Any]) -> set[str]:
    return {h for name, group in listing.items() if name != "_meta" for h in group.get("hosts", [])}


def ansible_view(hostvars: dict[str, Any]) -> View:
    def pick(vars_: dict[str, Any], field: str) -> Any:
        for key in (f"ansible_ssh_{field}", f"ansible_{field}"):
            if vars_.get(key) is not None:
                return vars_[key]
        return None

    view: View = {}
    for name, vars_ in hostvars.items():
        in_service = parse_flag(vars_.get("in_service", True))
        assert in_service is not None
        view[name] = (str(pick(vars_, "host") or name), int(pick(vars_, "port") or 22),
                      str(pick(vars_, "user") or "root"), in_service,
                      {k: tag_value(v) for k, v in vars_.items() if not k.startswith("ansible_") and k != "in_service"})
    return view


def graylift_view(hosts: list[Host]) -> View:
    return {h.name: (h.address, h.port, h.user, h.in_service, dict(h.tags)) for h in hosts}


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("ansible")
    (folder / "ansible.cfg").write_text(ANSIBLE_CFG)
    return folder


@pytest.fixture(scope="module")
def oracle(home: Path) -> dict[Path, dict[str, Any] | str]:
    files = corpus()
    return {path: hostvars_of(*result) for path, result in zip(files, run_many("inventory", files, home), strict=True)}


def test_every_corpus_file_agrees_with_ansible_or_is_refused_clearly(oracle: dict[Path, Any]) -> None:
    agree, refused, silently_different, unclear, unexpected = [], [], [], [], []
    for path, ansible in oracle.items():
        kind, feature = expectation(path)
        try:
            mine = graylift_view(load_hosts_file(path))
        except InventoryError as exc:
            message = str(exc)
            at_line = re.match(rf"{re.escape(str(path))}:\d+: ", message)
            whole_file = message.startswith(f"{path}: ") and "group_vars" in message
            if "\n" in message or not (at_line or whole_file) or feature not in message:
                unclear.append(f"{path.name}: {message}")
            elif kind != "refuse":
                unexpected.append(f"{path.name}: refused, expected to agree: {message}")
            else:
                refused.append(path.name)
            continue
        theirs = ansible_view(ansible) if isinstance(ansible, dict) else None
        if theirs != mine:
            silently_different.append(f"{path.name}:\n  ansible:  {theirs or ansible}\n  graylift: {mine}")
            continue
        if kind != "agree":
            unexpected.append(f"{path.name}: agreed, expected a refusal naming {feature!r}")
        agree.append(path.name)
    summary = (f"{len(oracle)} files: {len(agree)} agree with ansible-inventory, {len(refused)} refused with a "
               f"clear line, {len(silently_different)} silently different")
    print(summary)
    assert silently_different == [], summary + "\n" + "\n".join(silently_different)
    assert unclear == [], "\n".join(unclear)
    assert unexpected == [], "\n".join(unexpected)
    assert agree and refused


def test_a_refused_plugin_file_can_be_exported_by_ansible_and_imported(tmp_path: Path) -> None:
    """The advice for plugin files works: `ansible-inventory --list --yaml` output imports unchanged."""
    cfg = tmp_path / "ansible.cfg"
    cfg.write_text(ANSIBLE_CFG)
    source = CORPUS / "yaml_groups_of_groups.yml"
    env = os.environ | {"LC_ALL": "C.UTF-8", "ANSIBLE_CONFIG": str(cfg), "ANSIBLE_HOME": str(tmp_path)}
    exported = subprocess.run([str(ANSIBLE_INVENTORY), "-i", str(source), "--list", "--yaml"], capture_output=True,
                              text=True, env=env, timeout=120, check=True).stdout
    target = tmp_path / "hosts.yml"
    target.write_text(exported)
    assert graylift_view(load_hosts_file(target)) == graylift_view(load_hosts_file(source))


CONNECTING = ["ini_ssh_names.ini", "yaml_ssh_names.yml", "ini_host_port.ini", "yaml_host_port.yml",
              "ini_group_priority.ini", "ini_sibling_order.ini", "ini_groups_of_groups.ini", "yaml_merge_keys.yml"]


def ansible_connects(stdout: str) -> dict[str, tuple[str, int]]:
    """Address -> (user, port) of the ssh command `ansible -vvv` runs (the executable is /bin/false, so nothing
    leaves the machine). No user: graylift's default, root; no port: 22."""
    seen: dict[str, tuple[str, int]] = {}
    for line in stdout.splitlines():
        if match := re.match(r"<([^>]+)> ESTABLISH SSH CONNECTION FOR USER: (\S+)", line):
            user = "root" if match.group(2) == "None" else match.group(2)
            seen[match.group(1)] = (user, seen.get(match.group(1), ("", 22))[1])
        elif (match := re.match(r"<([^>]+)> SSH: EXEC /bin/false .*?-o Port=(\d+)", line)) and match.group(1) in seen:
            seen[match.group(1)] = (seen[match.group(1)][0], int(match.group(2)))
    return seen


def test_ansible_connects_with_the_user_port_and_address_graylift_imports(home: Path) -> None:
    files = [CORPUS / name for name in CONNECTING]
    for path, (_, stdout, _) in zip(files, run_many("connect", files, home), strict=True):
        mine = {h.address: (h.user, h.port) for h in load_hosts_file(path)}
        assert ansible_connects(stdout) == mine, path.name


def test_generated_inventories_agree_with_ansible_or_are_refused(home: Path, tmp_path: Path) -> None:
    """The property tests' generators of well-formed inventories (tests/unit/test_properties.py), a fixed sample
    through the oracle: graylift agrees with ansible-inventory or refuses, and accepts nothing Ansible cannot read."""
    import yaml
    from hypothesis import HealthCheck, given, settings

    from tests.unit import test_properties as gen

    files: list[Path] = []
    sample = settings(max_examples=40, derandomize=True, database=None, suppress_health_check=list(HealthCheck))

    @sample
    @given(text=gen.tidy_ini())
    def ini(text: str) -> None:
        files.append(tmp_path / f"{len(files)}.ini")
        files[-1].write_text(text)

    @sample
    @given(data=gen.tidy_yaml)
    def yml(data: dict[str, Any]) -> None:
        files.append(tmp_path / f"{len(files)}.yml")
        files[-1].write_text(yaml.safe_dump(data))

    ini()
    yml()
    agree, different = 0, []
    for path, result in zip(files, run_many("inventory", files, home), strict=True):
        theirs = hostvars_of(*result)
        try:
            mine = graylift_view(load_hosts_file(path))
        except InventoryError:
            continue
        if not isinstance(theirs, dict) or ansible_view(theirs) != mine:
            different.append(f"{path.read_text()}\n  ansible:  {theirs}\n  graylift: {mine}")
        else:
            agree += 1
    print(f"{len(files)} generated files: {agree} agree, {len(files) - agree - len(different)} refused, "
          f"{len(different)} silently different")
    assert different == [], "\n".join(different)
    assert agree > 0
