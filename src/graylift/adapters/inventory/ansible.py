"""Ansible inventories as Ansible reads them: the group model, host patterns and values.

The INI and YAML readers (:mod:`.ansible_ini`, :mod:`.ansible_yaml`) fill one :class:`AnsibleModel`; it resolves
each host's variables the way ``ansible-inventory --list`` does, and the test suite checks that against
ansible-core itself (tests/adapters/inventory/test_ansible_oracle.py):

* a host's variables: its groups' variables ordered by (depth, ``ansible_group_priority``, name), ``all``
  first, then the host's own, the later winning (depth: the longest path from ``all``);
* address, port and user: ``ansible_ssh_host`` / ``_port`` / ``_user`` win over ``ansible_host`` / ``_port`` /
  ``_user`` (the order of the ssh connection plugin); no address: the name, when it is an IP address or a
  dotted DNS name; ``host:2222`` sets ``ansible_port``;
* ``in_service`` (true/false) marks a host out of service; every other variable not named ``ansible_*`` is a tag
  (a list or mapping as JSON);
* a host's group is its most specific group in that same order (``default`` when only in ``all``/``ungrouped``).

What graylift cannot do is refused with the file, the line and the feature, never dropped: a non-SSH
``ansible_connection`` (``local``, ``docker``, ...), extra SSH arguments (a ProxyJump), a password or a
private key per host, ``group_vars/`` / ``host_vars/`` next to the file, inventory plugin files.
Other ``ansible_*`` variables (``ansible_python_interpreter``, ``ansible_become``) are Ansible's own and ignored.
"""

from __future__ import annotations

import ast
import ipaddress
import re
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from graylift.core.hosts import DEFAULT_GROUP, build_host
from graylift.core.model import Host, is_plain_name
from graylift.errors import InventoryError

# variable -> what to do instead; a host with any of these set (and not empty) is refused
UNSUPPORTED = {
    "ansible_ssh_common_args": "graylift passes no extra SSH arguments (a ProxyJump): reach the host directly",
    "ansible_ssh_extra_args": "graylift passes no extra SSH arguments: reach the host directly",
    "ansible_ssh_args": "graylift passes no extra SSH arguments: reach the host directly",
    "ansible_password": "graylift logs in with the SSH key of the config, never a password",
    "ansible_ssh_pass": "graylift logs in with the SSH key of the config, never a password",
    "ansible_ssh_password": "graylift logs in with the SSH key of the config, never a password",
    "ansible_private_key_file": "graylift uses one SSH key, the config's: remove the per-host key",
    "ansible_ssh_private_key_file": "graylift uses one SSH key, the config's: remove the per-host key",
}
SSH_CONNECTIONS = {"ssh", "smart", "paramiko", "ansible.builtin.ssh", "ansible.builtin.paramiko_ssh"}
_PORT_SUFFIX = re.compile(r"^((?:[^:\[\]]|\[[^\]]*\])+):([0-9]+)$")
_BRACKETED_V6 = re.compile(r"^\[([0-9A-Fa-f:.]+)\](?::([0-9]+))?$")
_RANGE = re.compile(r"\[([^\]]*)\]")


def where(path: Path, line: int | None) -> str:
    return f"{path}:{line}" if line else str(path)


def literal(text: str) -> Any:
    """A value as Ansible's INI reader takes it: a Python literal when it is one, else the text itself."""
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return text
    return _plain(value)


def _plain(value: Any) -> Any:
    if isinstance(value, list | tuple | set):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, bytes):
        return value.decode("utf-8", "surrogateescape")
    if value is ...:
        return "..."
    if isinstance(value, complex):
        return str(value)
    return value


def check_vars_dirs(path: Path) -> None:
    """Ansible also reads group_vars/ and host_vars/ next to the file; graylift does not, so it refuses."""
    for name in ("group_vars", "host_vars"):
        if (path.parent / name).is_dir():
            raise InventoryError(
                f"{path}: Ansible also reads {path.parent / name}/ next to this file and graylift does not; "
                f"merge those variables into the file (`ansible-inventory -i {path} --list --yaml`) and import that")


def expand_pattern(pattern: str, at: str) -> tuple[list[str], int | None]:
    """Host names and port of an Ansible host pattern: ``web[01:03]:2222``, ``[2001:db8::1]:22``, ``db-[a:c]``."""
    if _is_ipv6(pattern):
        return [pattern], None
    if (match := _BRACKETED_V6.match(pattern)) and _is_ipv6(match.group(1)):
        return [match.group(1)], int(match.group(2)) if match.group(2) else None
    port = None
    if match := _PORT_SUFFIX.match(pattern):
        pattern, port = match.group(1), int(match.group(2))
    return _expand_ranges(pattern, at), port


def _is_ipv6(text: str) -> bool:
    try:
        return isinstance(ipaddress.ip_address(text), ipaddress.IPv6Address)
    except ValueError:
        return False


def _expand_ranges(pattern: str, at: str) -> list[str]:
    """web[01:03] -> web01..web03, db-[a:c] / [A:C] -> letters, [1:9:4] a step; several ranges multiply."""
    match = _RANGE.search(pattern)
    if not match:
        return [pattern]
    bounds = match.group(1).split(":")
    if len(bounds) not in (2, 3) or not bounds[1]:
        raise InventoryError(f"{at}: host range {match.group(0)!r}: expected [start:end] or [start:end:step]")
    start, end = bounds[0] or "0", bounds[1]
    step_text = bounds[2] if len(bounds) == 3 else "1"
    if not step_text.isdigit() or int(step_text) < 1:
        raise InventoryError(f"{at}: host range {match.group(0)!r}: the step must be a whole number >= 1")
    step = int(step_text)
    if start.isdigit() and end.isdigit():
        width = len(start) if start.startswith("0") and len(start) > 1 else 0
        if width and len(end) != width:
            raise InventoryError(f"{at}: host range {match.group(0)!r}: start and end must have the same width")
        values = [str(i).zfill(width) for i in range(int(start), int(end) + 1, step)]
    elif len(start) == 1 == len(end) and start in string.ascii_letters and end in string.ascii_letters:
        letters = string.ascii_letters
        values = list(letters[letters.index(start) : letters.index(end) + 1 : step])
    else:
        raise InventoryError(f"{at}: host range {match.group(0)!r}: expected numbers or single letters")
    if not values:
        raise InventoryError(f"{at}: host range {match.group(0)!r} is empty")
    prefix, suffix = pattern[: match.start()], pattern[match.end() :]
    return [name for v in values for name in _expand_ranges(prefix + v + suffix, at)]


@dataclass
class _Group:
    name: str
    line: int | None
    declared: bool = False  # INI: by [name] or [name:children]; [name:vars] alone does not declare it
    vars: dict[str, Any] = field(default_factory=dict)
    var_lines: dict[str, int | None] = field(default_factory=dict)
    children: list[str] = field(default_factory=list)
    child_lines: dict[str, int | None] = field(default_factory=dict)
    hosts: list[str] = field(default_factory=list)
    priority: Any = 1  # ansible_group_priority: Ansible keeps it apart from the variables
    priority_line: int | None = None


@dataclass
class _AnsibleHost:
    name: str
    line: int | None
    vars: dict[str, Any] = field(default_factory=dict)
    var_lines: dict[str, int | None] = field(default_factory=dict)


class AnsibleModel:
    """Groups, children and variables as Ansible has them; resolves them into Hosts."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.groups = {name: _Group(name, None, declared=True) for name in ("all", "ungrouped")}
        self.hosts: dict[str, _AnsibleHost] = {}

    def group(self, name: str, line: int | None, *, declare: bool = True) -> _Group:
        if name not in self.groups:
            if not is_plain_name(name):
                raise InventoryError(f"{where(self.path, line)}: group name {name!r} is not a plain name "
                                     "(letters, digits, '.', '_', '+', '-')")
            self.groups[name] = _Group(name, line)
        group = self.groups[name]
        group.declared = group.declared or declare
        return group

    def set_group_var(self, group: str, key: str, value: Any, line: int | None) -> None:
        g = self.groups[group]
        if key == "ansible_group_priority":
            g.priority, g.priority_line = value, line
        else:
            g.vars[key], g.var_lines[key] = value, line

    def add_child(self, parent: str, child: str, line: int | None) -> None:
        g = self.groups[parent]
        if child not in g.children:
            g.children.append(child)
            g.child_lines[child] = line
        self.group(child, line, declare=False)

    def add_host(self, group: str, name: str, line: int | None, host_vars: dict[str, Any], *,
                 again_ok: bool = False) -> None:
        g = self.group(group, line)
        if name in g.hosts and not again_ok:
            raise InventoryError(f"{where(self.path, line)}: duplicate host name {name!r} in group {group!r}")
        if name not in g.hosts:
            g.hosts.append(name)
        host = self.hosts.setdefault(name, _AnsibleHost(name, line))
        for key, value in host_vars.items():
            if key in ("ansible_host", "ansible_ssh_host") and key in host.vars and host.vars[key] != value:
                raise InventoryError(
                    f"{where(self.path, line)}: host {name!r} field {key!r}: {value!r} differs from "
                    f"{host.vars[key]!r} at line {host.var_lines[key]}; give the host one address")
            host.vars[key], host.var_lines[key] = value, line

    def resolve(self) -> list[Host]:
        self._check_declared()
        depth = self._depths()
        priority = {name: self._priority(g) for name, g in self.groups.items()}

        def order(name: str) -> tuple[int, int, str]:
            return depth[name], priority[name], name

        membership: dict[str, list[str]] = {name: [] for name in self.hosts}
        for grp in self.groups.values():
            for h in grp.hosts:
                membership[h].append(grp.name)
        return [self._host(host, membership[name], order) for name, host in self.hosts.items()]

    def _host(self, host: _AnsibleHost, groups: list[str], order: Any) -> Host:
        merged: dict[str, Any] = {}
        lines: dict[str, int | None] = {}
        for group_name in sorted(self._with_ancestors(groups), key=order):
            merged.update(self.groups[group_name].vars)
            lines.update(self.groups[group_name].var_lines)
        merged.update(host.vars)
        lines.update(host.var_lines)
        self._check_supported(host.name, merged, lines)

        def pick(field: str) -> tuple[str, Any]:  # the ssh plugin takes ansible_ssh_X over ansible_X
            for key in (f"ansible_ssh_{field}", f"ansible_{field}"):
                if merged.get(key) is not None:
                    return key, merged[key]
            return f"ansible_{field}", None

        spelled, item = {}, {}
        for field_, ansible in (("address", "host"), ("port", "port"), ("user", "user")):
            spelled[field_], item[field_] = pick(ansible)
        specific = [g for g in groups if g not in ("all", "ungrouped")]
        item |= {"name": host.name, "group": max(specific, key=order, default=DEFAULT_GROUP),
                 "in_service": merged.get("in_service"),
                 "tags": {k: v for k, v in merged.items() if not k.startswith("ansible_") and k != "in_service"}}

        def at(field_: str) -> str:
            return where(self.path, lines.get(spelled.get(field_, field_), host.line) or host.line)

        if not is_plain_name(host.name) and _is_ipv6(host.name):
            raise InventoryError(f"{where(self.path, host.line)}: host name {host.name!r} is an IPv6 address; "
                                 f"graylift names hosts with plain names: write `NAME ansible_host={host.name}`")
        return build_host(item, at, name_is_address=True, spelled=spelled)

    def _check_supported(self, name: str, merged: dict[str, Any], lines: dict[str, int | None]) -> None:
        connection = merged.get("ansible_connection")
        if connection is not None and str(connection) not in SSH_CONNECTIONS:
            raise InventoryError(
                f"{where(self.path, lines.get('ansible_connection'))}: host {name!r} has "
                f"ansible_connection={connection}: graylift reaches every host over SSH; give the host an SSH "
                "address or leave it out of the file")
        for key, advice in UNSUPPORTED.items():
            if merged.get(key) not in (None, ""):
                raise InventoryError(f"{where(self.path, lines.get(key))}: host {name!r} sets {key}, which graylift "
                                     f"does not support: {advice}")

    def _priority(self, group: _Group) -> int:
        value = group.priority
        if isinstance(value, bool) or not str(value).strip().lstrip("-").isdigit():
            raise InventoryError(f"{where(self.path, group.priority_line)}: group {group.name!r} field "
                                 f"'ansible_group_priority': expected a whole number, got {value!r}")
        return int(value)

    def _check_declared(self) -> None:
        for g in self.groups.values():
            for child in g.children:
                if not self.groups[child].declared:
                    raise InventoryError(f"{where(self.path, g.child_lines[child])}: [{g.name}:children] names "
                                         f"group {child!r}, which is not defined; add a [{child}] section")
        for g in self.groups.values():
            if not g.declared:
                raise InventoryError(f"{where(self.path, g.line)}: [{g.name}:vars] is for group {g.name!r}, which "
                                     f"is not defined; add a [{g.name}] section or fix the name")

    def _with_ancestors(self, groups: list[str]) -> list[str]:
        parents: dict[str, list[str]] = {}
        for grp in self.groups.values():
            for child in grp.children:
                parents.setdefault(child, []).append(grp.name)
        result: list[str] = ["all"]
        todo = list(groups)
        while todo:
            name = todo.pop(0)
            if name not in result:
                result.append(name)
                todo.extend(parents.get(name, []))
        return result

    def _depths(self) -> dict[str, int]:
        """Longest distance of each group from `all` (top-level groups are 1)."""
        depth: dict[str, int] = {}

        def visit(name: str, stack: tuple[str, ...]) -> int:
            if name in stack:
                cycle = " -> ".join((*stack[stack.index(name) :], name))
                raise InventoryError(f"{where(self.path, self.groups[name].line)}: groups form a cycle: {cycle}")
            if name not in depth:
                parents = [g.name for g in self.groups.values() if name in g.children and g.name != "all"]
                depth[name] = 1 + max((visit(p, (*stack, name)) for p in parents), default=0)
            return depth[name]

        for name in self.groups:
            if name != "all":
                visit(name, ())
        depth["all"] = 0
        return depth
