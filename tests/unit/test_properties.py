"""Properties over generated input (hypothesis): what holds for every config, inventory and fleet.

* config: any YAML text or mapping either loads or raises ConfigError whose every line names the file;
* inventories: any Ansible INI or YAML text either gives hosts or raises InventoryError, one line naming the file;
* planning: for any fleet, strategy and set of down / skipped hosts, every batch of core/plan.py's plan keeps
  the hosts out of service below half the cluster, no host is in two batches, and every eligible host is planned
  exactly once; a refused plan is one whose largest batch would break that cap.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from graylift.adapters.inventory.hostfile import load_hosts_file
from graylift.config import load_config
from graylift.core.model import Host, Strategy
from graylift.core.plan import make_plan, max_out
from graylift.errors import ConfigError, InventoryError, PlanError

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def folder() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as tmp:
        yield Path(tmp)


# ---------------------------------------------------------------------------------------------- config
WORDS = ["state", "ssh", "apps", "repositories", "shop", "package", "type", "tar.gz", "war", "jar", "local_dir",
         "url", "deploy", "dir", "commands", "start", "stop", "health", "command", "http", "strategy", "canary",
         "group", "count", "batch", "size", "percent", "envs", "prod", "traffic", "haproxy", "nginx", "socket",
         "backend", "silence", "alertmanager", "known_hosts", "key", "user", "port", "inventory", "builtin",
         "hosts", "pause", "on_failure", "rollback", "abort", "", "[x]", "{a}", "${ENV}", "é", "0", "-1"]
scalars = st.one_of(st.none(), st.booleans(), st.integers(-5, 70000), st.floats(allow_nan=False),
                    st.sampled_from(WORDS), st.text(max_size=12))
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.sampled_from(WORDS), inner, max_size=5)), max_leaves=25)
configs = st.dictionaries(st.sampled_from(["state", "ssh", "apps", "repositories", "notify", "bogus"]), values,
                          max_size=5)
app_configs = st.fixed_dictionaries({"apps": st.dictionaries(st.sampled_from(["shop", "web", "x y"]), st.dictionaries(
    st.sampled_from(WORDS), values, max_size=8), min_size=1, max_size=2)}, optional={"ssh": values, "state": values})
BASE: dict[str, Any] = {
    "state": "sqlite:///state.db",
    "apps": {"shop": {"package": {"type": "tar.gz", "local_dir": "/tmp"}, "deploy": {"dir": "/srv/shop"},
                      "commands": {"start": "true", "stop": "true"}, "health": {"command": "true"},
                      "strategy": {"canary": {"group": "beta", "count": 1}, "batch": {"size": 2}},
                      "envs": {"prod": {"strategy": {"batch": {"percent": 20, "size": None}}}}}}}
PATHS = [("state",), ("apps",), ("apps", "shop"), ("apps", "shop", "package"), ("apps", "shop", "package", "type"),
         ("apps", "shop", "deploy", "dir"), ("apps", "shop", "commands", "start"), ("apps", "shop", "health"),
         ("apps", "shop", "strategy", "canary", "count"), ("apps", "shop", "strategy", "batch"),
         ("apps", "shop", "strategy", "batch", "size"), ("apps", "shop", "envs", "prod"),
         ("apps", "shop", "envs", "prod", "strategy", "batch", "percent"), ("apps", "shop", "traffic"),
         ("ssh",), ("apps", "shop", "inventory"), ("apps", "shop", "envs", "prod", "deploy")]


@st.composite
def edited_configs(draw: st.DrawFn) -> dict[str, Any]:
    """The valid BASE with a few fields replaced by anything (or removed)."""
    data = yaml.safe_load(yaml.safe_dump(BASE))
    for _ in range(draw(st.integers(1, 3))):
        *parents, last = draw(st.sampled_from(PATHS))
        node = data
        for key in parents:
            node = node.setdefault(key, {}) if isinstance(node, dict) else {}
        if isinstance(node, dict):
            if draw(st.integers(0, 4)) == 0:
                node.pop(last, None)
            else:
                node[last] = draw(values)
    return data


yaml_texts = st.text(alphabet=st.sampled_from(list("ab:- \n\t[]{}#&*!|>'\",%@`?=\\x0é")), max_size=80)


def _config_loads_or_names_the_file(folder: Path, text: str) -> None:
    path = folder / "graylift.yaml"
    path.write_text(text, encoding="utf-8")
    try:
        load_config(path)
        event("config: loaded")
    except ConfigError as exc:
        event("config: refused")
        lines = str(exc).splitlines()
        body = lines[1:] if len(lines) > 1 else lines
        assert all(line.strip().startswith(str(path)) for line in body), str(exc)
        assert exc.file == str(path)


@FAST
@given(data=st.one_of(configs, app_configs, edited_configs()))
def test_any_config_mapping_loads_or_is_a_config_error(folder: Path, data: dict[str, Any]) -> None:
    _config_loads_or_names_the_file(folder, yaml.safe_dump(data, allow_unicode=True))


@FAST
@given(text=yaml_texts)
def test_any_config_text_loads_or_is_a_config_error(folder: Path, text: str) -> None:
    _config_loads_or_names_the_file(folder, text)


# ---------------------------------------------------------------------------------------------- inventories
names = st.sampled_from(["web-1", "web[1:3]", "db:2222", "[2001:db8::1]:22", "2001:db8::1", "a b", "web[a:c]",
                         "x[01:3]", "h.example.com", "-bad", "web[1:0]", "[web]", "10.0.0.1", "WEB[A:B]", "h:"])
ini_values = st.sampled_from(["1", "True", "None", "'q'", '"d q"', "[1, 2]", "{'a': 1}", "it's", "0x1f", "1e400",
                              "(1,", "10.0.0.1", "70000", "", "local", "#c", "a  b", "b'x'", "...", "1j", "{1, 2}"])
keys = st.sampled_from(["ansible_host", "ansible_port", "ansible_user", "ansible_ssh_host", "ansible_ssh_port",
                        "ansible_connection", "ansible_group_priority", "in_service", "zone", "ansible_ssh_common_args",
                        "ansible_password", "x-y", ""])
groups = st.sampled_from(["web", "db", "all", "prod", "web", "db", "ungrouped", "a b", "w:x"])
good_host = st.builds(lambda i, port, zone: f"web-{i} ansible_host=10.0.0.{i} ansible_port={port} zone={zone}",
                      st.integers(1, 9), st.sampled_from(["22", "2222", "'2200'"]), ini_values)
any_host = st.builds(lambda n, kvs: " ".join([n, *(f"{k}={v}" for k, v in kvs)]), names,
                     st.lists(st.tuples(keys, ini_values), max_size=3))
var_line = st.builds(lambda k, v: f"{k} = {v}", keys, ini_values)
odd_line = st.sampled_from(["# comment", "; c", "", "  ", "'unclosed", "key=", "===", "[", "]", "[web] x", "[a b]"])
kinds = {"": st.one_of(good_host, good_host, any_host), ":vars": var_line, ":children": groups}


@st.composite
def ini_sections(draw: st.DrawFn) -> list[str]:
    """A section header and lines of its kind, now and then a line of another kind or an odd one."""
    kind = draw(st.sampled_from(["", "", "", ":vars", ":children", ":bogus", "] # c"]))
    own = kinds.get(kind, odd_line)
    body = draw(st.lists(st.one_of(own, own, own, own, own, odd_line, any_host), max_size=4))
    return [f"[{draw(groups)}{kind}]", *body]


rough_ini = st.builds(lambda first, sections: "\n".join(first + [line for sec in sections for line in sec]),
                      st.lists(st.one_of(good_host, any_host, odd_line), max_size=3),
                      st.lists(ini_sections(), max_size=5))
safe_values = st.sampled_from(["1", "True", "'q'", '"d q"', "[1, 2]", "{'a': 1}", "it's", "a  b", "x # y", "2222"])


@st.composite
def tidy_ini(draw: st.DrawFn) -> str:
    """Well-formed files: hosts once per group, vars for defined groups, children that exist."""
    lines = []
    for group in ("web", "db"):
        lines.append(f"[{group}]")
        for i in draw(st.sets(st.integers(1, 9), max_size=4)):
            extra = draw(st.lists(st.tuples(st.sampled_from(["zone", "in_service", "ansible_port", "ansible_user",
                                                             "ansible_ssh_port", "role"]), safe_values), max_size=2))
            lines.append(" ".join([f"web-{i}", f"ansible_host=10.0.0.{i}", *(f"{k}={v}" for k, v in extra)]))
        if draw(st.booleans()):
            lines += [f"[{group}:vars]", f"ansible_group_priority={draw(st.integers(-3, 3))}",
                      f"tier = {draw(safe_values)}"]
    if draw(st.booleans()):
        lines += ["[prod:children]", *draw(st.lists(st.sampled_from(["web", "db"]), max_size=2))]
    return "\n".join(draw(st.permutations(lines)) if draw(st.integers(0, 5)) == 0 else lines)


ini_texts = st.one_of(rough_ini, tidy_ini())


@FAST
@given(text=ini_texts)
def test_any_ini_inventory_parses_or_is_an_inventory_error(folder: Path, text: str) -> None:
    _inventory_parses_or_names_the_file(folder / "hosts.ini", text)


host_vars = st.one_of(
    st.none(), st.dictionaries(keys, values, max_size=4), values,
    st.builds(lambda i, extra: {"ansible_host": f"10.0.0.{i}", **extra}, st.integers(1, 9),
              st.dictionaries(keys, values, max_size=2)),
    st.builds(lambda i: {"ansible_host": f"10.0.0.{i}"}, st.integers(1, 9)))
host_names = st.one_of(names, st.builds("web-{}".format, st.integers(1, 9)), st.builds("10.0.0.{}".format,
                                                                                       st.integers(1, 9)))
yaml_groups = st.recursive(
    st.one_of(
        st.none(),
        st.fixed_dictionaries({"hosts": st.dictionaries(host_names, host_vars, min_size=1, max_size=4)}),
        st.fixed_dictionaries({}, optional={
            "hosts": st.one_of(st.dictionaries(host_names, host_vars, max_size=4), values),
            "vars": st.one_of(st.dictionaries(keys, values, max_size=3), values)})),
    lambda inner: st.fixed_dictionaries({}, optional={
        "children": st.dictionaries(groups, inner, max_size=3),
        "hosts": st.dictionaries(host_names, host_vars, max_size=3),
        "vars": st.dictionaries(keys, values, max_size=3)}),
    max_leaves=10)


tidy_vars = st.dictionaries(st.sampled_from(["zone", "in_service", "ansible_port", "ansible_user", "ansible_ssh_port",
                                             "ansible_group_priority", "role", "list"]),
                            st.one_of(st.integers(1, 3000), st.booleans(), st.sampled_from(["a", "deploy", "x y"]),
                                      st.lists(st.integers(0, 3), max_size=2)), max_size=3)
tidy_hosts = st.dictionaries(st.builds("web-{}".format, st.integers(1, 9)), st.builds(
    lambda i, extra: {"ansible_host": f"10.0.0.{i}", **extra}, st.integers(1, 9), tidy_vars), min_size=1, max_size=4)
tidy_yaml = st.builds(lambda web, db, both, top: {"all": {"vars": top, "children": {
    "web": {"hosts": web}, "db": {"hosts": db}, "prod": {"children": {"web": None, "db": {"vars": both}}}}}},
    tidy_hosts, tidy_hosts, tidy_vars, tidy_vars)


@FAST
@given(data=st.one_of(
    tidy_yaml,
    st.dictionaries(st.sampled_from(["all", "web", "db", "prod"]), yaml_groups, min_size=1, max_size=3),
    st.dictionaries(st.sampled_from(["all", "web", "plugin", "hosts", "bogus"]), values, max_size=3)))
def test_any_yaml_inventory_parses_or_is_an_inventory_error(folder: Path, data: dict[str, Any]) -> None:
    _inventory_parses_or_names_the_file(folder / "hosts.yml", yaml.safe_dump(data, allow_unicode=True))


def _inventory_parses_or_names_the_file(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")
    try:
        hosts = load_hosts_file(path)
    except InventoryError as exc:
        event("inventory: refused")
        assert str(exc).startswith(str(path)) and "\n" not in str(exc), str(exc)
        return
    event("inventory: parsed")
    assert hosts and len({h.name for h in hosts}) == len(hosts)


# ---------------------------------------------------------------------------------------------- planning
@st.composite
def fleets(draw: st.DrawFn) -> tuple[list[Host], Strategy, dict[str, str], dict[str, str]]:
    size = draw(st.integers(1, 60))
    hosts = [Host(f"h{i}", f"10.0.{i // 250}.{i % 250 + 1}", group=draw(st.sampled_from(["beta", "prod"])),
                  tags={"zone": draw(st.sampled_from("abc"))}, in_service=draw(st.integers(0, 9)) > 0)
             for i in range(size)]
    down = draw(st.sets(st.sampled_from([h.name for h in hosts]), max_size=max(0, size // 3)))
    attention = draw(st.sets(st.sampled_from([h.name for h in hosts]), max_size=max(0, size // 4)))
    by_size = draw(st.booleans())
    canary = draw(st.booleans())
    strategy = Strategy(
        batch_size=draw(st.integers(1, size)) if by_size else None,
        batch_percent=None if by_size else draw(st.floats(1, 100)),
        canary_group="beta" if canary else None, canary_count=draw(st.integers(1, 5)))
    return hosts, strategy, dict.fromkeys(down, "down"), dict.fromkeys(attention - down, "needs attention")


@settings(max_examples=400, deadline=None)
@given(case=fleets())
def test_every_plan_keeps_the_cap_and_plans_each_eligible_host_once(
        case: tuple[list[Host], Strategy, dict[str, str], dict[str, str]]) -> None:
    hosts, strategy, down, attention = case
    cluster = len(hosts)
    out = {h.name for h in hosts if not h.in_service} | set(down) | set(attention)
    eligible = [h.name for h in hosts if h.in_service and h.name not in down]
    cap = max_out(cluster, strategy)
    try:
        plan = make_plan(hosts, strategy, unhealthy=down, attention=attention)
    except PlanError as exc:
        event("plan: refused")
        if "canary group" in str(exc):
            assert not [h for h in hosts if h.group == "beta" and h.name in eligible and h.name not in attention]
            return
        assert "out of service at once" in str(exc), str(exc)
        assert len(out) + _largest_batch(hosts, strategy, eligible, attention) > cap
        return
    event("plan: made")
    planned = [name for batch in plan.batches for name in batch.hosts]
    assert len(planned) == len(set(planned)), "a host is in two batches"
    assert sorted(planned) == sorted(eligible), "every eligible host exactly once"
    for batch in plan.batches:
        assert len(out | set(batch.hosts)) <= cap and 2 * len(out | set(batch.hosts)) < cluster, batch
    assert {s.host for s in plan.skipped} == {h.name for h in hosts if h.name not in eligible}


def _largest_batch(hosts: list[Host], strategy: Strategy, eligible: list[str], attention: dict[str, str]) -> int:
    """An independent count of the planner's largest batch (canary or rolling): what the cap judges."""
    canaries = ([n for n in eligible if n not in attention and next(h for h in hosts if h.name == n).group == "beta"]
                [: strategy.canary_count] if strategy.canary_group else [])
    rest = len(eligible) - len(canaries)
    in_service = sum(1 for h in hosts if h.in_service)
    size = strategy.batch_size or max(1, math.ceil(in_service * (strategy.batch_percent or 0) / 100))
    return max(len(canaries), min(size, rest))
