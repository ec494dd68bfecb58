"""Ansible inventories as host files: INI (``[group]``, ``[group:vars]``, ``[group:children]``) and YAML.

Variables are inherited (all -> parent group -> child group -> host line, the later winning);
``ansible_host``/``ansible_port``/``ansible_user`` set the address, port and user, ``in_service`` (true/false)
marks a host out of service, every other variable becomes a tag. A host's group is the most deeply nested
group it belongs to (the first listed on a tie); a host only in ``all``/``ungrouped`` gets group ``default``.
A host without ``ansible_host`` is reached at its name when that is an IP address or a dotted DNS name.
Host ranges (``web[01:03]``, ``db-[a:c]``) are expanded. Every error is an InventoryError naming the file,
the line and the field; the hosts themselves are checked by :func:`graylift.core.hosts.build_host`.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from graylift.core.hosts import DEFAULT_GROUP, build_host
from graylift.core.model import Host, is_plain_name
from graylift.errors import InventoryError
from graylift.yamldoc import Document, Path_

SECTION = re.compile(r"^\[([^\]\s]+)\]\s*$")
_RANGE = re.compile(r"\[([0-9]+|[a-z]):([0-9]+|[a-z])(?::([0-9]+))?\]")


def where(path: Path, line: int | None) -> str:
    return f"{path}:{line}" if line else str(path)


@dataclass
class _Group:
    name: str
    vars: dict[str, Any] = field(default_factory=dict)
    children: list[str] = field(default_factory=list)
    hosts: list[str] = field(default_factory=list)


@dataclass
class _AnsibleHost:
    name: str
    line: int | None
    vars: dict[str, Any] = field(default_factory=dict)
    var_lines: dict[str, int | None] = field(default_factory=dict)


class _AnsibleModel:
    """Groups, children and variables as Ansible has them; resolves them into Hosts."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.groups: dict[str, _Group] = {"all": _Group("all"), "ungrouped": _Group("ungrouped")}
        self.hosts: dict[str, _AnsibleHost] = {}
        self.group_lines: dict[str, int | None] = {}

    def group(self, name: str, line: int | None) -> _Group:
        if name not in self.groups:
            if not is_plain_name(name):
                raise InventoryError(
                    f"{where(self.path, line)}: group name {name!r} is not a plain name "
                    "(letters, digits, '.', '_', '+', '-')"
                )
            self.groups[name] = _Group(name)
            self.group_lines[name] = line
        return self.groups[name]

    def add_host(self, group: str, name: str, line: int | None, host_vars: dict[str, Any]) -> None:
        g = self.group(group, line)
        if name in g.hosts:
            raise InventoryError(
                f"{where(self.path, line)}: duplicate host name {name!r} in group {group!r}"
            )
        g.hosts.append(name)
        host = self.hosts.setdefault(name, _AnsibleHost(name, line))
        for key, value in host_vars.items():
            if key in ("ansible_host", "ansible_ssh_host") and key in host.vars and host.vars[key] != value:
                raise InventoryError(
                    f"{where(self.path, line)}: host {name!r} field {key!r}: {value!r} differs from "
                    f"{host.vars[key]!r} at line {host.var_lines[key]}; give the host one address"
                )
            host.vars[key] = value
            host.var_lines[key] = line

    def resolve(self) -> list[Host]:
        depth = self._depths()
        membership: dict[str, list[str]] = {name: [] for name in self.hosts}  # host -> groups, file order
        for grp in self.groups.values():
            for h in grp.hosts:
                membership[h].append(grp.name)
        built: list[Host] = []
        for name, host in self.hosts.items():
            groups = self._with_ancestors(membership[name])
            ordered = sorted(groups, key=lambda g: depth.get(g, 0))  # stable: file order on a tie
            merged: dict[str, Any] = {}
            for group_name in ordered:
                merged.update(self.groups[group_name].vars)
            merged.update(host.vars)
            specific = [g for g in membership[name] if g not in ("all", "ungrouped")]
            group = max(specific, key=lambda g: depth.get(g, 0), default=DEFAULT_GROUP)
            address_key = ("ansible_ssh_host" if "ansible_ssh_host" in merged and "ansible_host" not in merged
                           else "ansible_host")
            item = {"name": name, "group": group,
                    "address": merged.pop("ansible_host", merged.pop("ansible_ssh_host", None)),
                    "port": merged.pop("ansible_port", merged.pop("ansible_ssh_port", None)),
                    "user": merged.pop("ansible_user", merged.pop("ansible_ssh_user", None)),
                    "in_service": merged.pop("in_service", None),
                    "tags": {k: v for k, v in merged.items() if not str(k).startswith("ansible_")}}
            built.append(build_host(item, where(self.path, host.line), name_is_address=True, spelled={
                "address": address_key, "port": "ansible_port", "user": "ansible_user"}))
        return built

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
        for name, g in self.groups.items():
            for child in g.children:
                if child not in self.groups:
                    raise InventoryError(
                        f"{where(self.path, self.group_lines.get(name))}: group {name!r} "
                        f"lists child group {child!r}, which is not defined"
                    )
        depth: dict[str, int] = {}

        def visit(name: str, stack: tuple[str, ...]) -> int:
            if name in stack:
                cycle = " -> ".join((*stack[stack.index(name) :], name))
                raise InventoryError(
                    f"{where(self.path, self.group_lines.get(name))}: groups form a cycle: {cycle}"
                )
            if name not in depth:
                parents = [g.name for g in self.groups.values() if name in g.children and g.name != "all"]
                depth[name] = 1 + max((visit(p, (*stack, name)) for p in parents), default=0)
            return depth[name]

        for name in self.groups:
            if name != "all":
                visit(name, ())
        depth["all"] = 0
        return depth


# ---------------------------------------------------------------------- (b) Ansible INI
class AnsibleIni:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.model = _AnsibleModel(path)

    def parse(self, text: str) -> list[Host]:
        section, kind = "ungrouped", "hosts"
        for number, line in enumerate(text.splitlines(), start=1):
            stripped = line.strip()
            if not stripped or stripped.startswith(("#", ";")):
                continue
            if stripped.startswith("["):
                section, kind = self._section(stripped, number)
                continue
            try:
                words = shlex.split(stripped, comments=True)
            except ValueError as exc:
                raise InventoryError(f"{self.path}:{number}: cannot parse line ({exc}): {stripped}") from exc
            if not words:
                continue
            if kind == "hosts":
                self._host_line(section, words, number)
            elif kind == "vars":
                key, value = self._key_value(" ".join(words), number, section)
                self.model.group(section, number).vars[key] = value
            else:  # children
                if len(words) != 1:
                    raise InventoryError(
                        f"{self.path}:{number}: [{section}:children] expects one group name "
                        f"per line, got {stripped!r}"
                    )
                self.model.group(words[0], number)
                children = self.model.group(section, number).children
                if words[0] not in children:
                    children.append(words[0])
        return self.model.resolve()

    def _section(self, stripped: str, number: int) -> tuple[str, str]:
        match = SECTION.match(stripped)
        if not match:
            raise InventoryError(
                f"{self.path}:{number}: expected a section header like [web], [web:vars] "
                f"or [web:children], got {stripped!r}"
            )
        name, _, kind = match.group(1).partition(":")
        kind = kind or "hosts"
        if kind not in ("hosts", "vars", "children"):
            raise InventoryError(
                f"{self.path}:{number}: unknown section kind {kind!r} in {stripped!r}; "
                "expected [group], [group:vars] or [group:children]"
            )
        self.model.group(name, number)
        return name, kind

    def _host_line(self, section: str, words: list[str], number: int) -> None:
        host_vars: dict[str, Any] = {}
        for word in words[1:]:
            key, value = self._key_value(word, number, section, host=words[0])
            host_vars[key] = value
        for name in _expand_range(words[0], self.path, number):
            self.model.add_host(section, name, number, host_vars)

    def _key_value(self, text: str, number: int, section: str, host: str | None = None) -> tuple[str, Any]:
        key, sep, value = text.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key:
            who = f"host {host!r}" if host else f"[{section}:vars]"
            raise InventoryError(f"{self.path}:{number}: {who}: expected key=value, got {text!r}")
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        return key, value


def _expand_range(pattern: str, path: Path, number: int) -> list[str]:
    """Ansible host ranges: web[01:03] -> web01, web02, web03; db-[a:c] -> db-a, db-b, db-c."""
    match = _RANGE.search(pattern)
    if not match:
        return [pattern]
    start, end, step_text = match.groups()
    step = int(step_text or 1)
    prefix, suffix = pattern[: match.start()], pattern[match.end() :]
    if start.isdigit() and end.isdigit():
        width = len(start) if start.startswith("0") else 0
        values = [str(i).zfill(width) for i in range(int(start), int(end) + 1, step)]
    elif start.isalpha() and end.isalpha():
        values = [chr(c) for c in range(ord(start), ord(end) + 1, step)]
    else:
        raise InventoryError(f"{path}:{number}: host range {match.group(0)!r} mixes digits and letters")
    if not values or step < 1:
        raise InventoryError(f"{path}:{number}: host range {match.group(0)!r} is empty")
    return [name for v in values for name in _expand_range(prefix + v + suffix, path, number)]


# ---------------------------------------------------------------------- (c) Ansible YAML
class AnsibleYaml:
    def __init__(self, path: Path, doc: Document) -> None:
        self.path, self.doc = path, doc
        self.model = _AnsibleModel(path)

    def parse(self, data: dict[str, Any]) -> list[Host]:
        for name, body in data.items():
            self._group(str(name), body, (name,))
            if name != "all":
                children = self.model.groups["all"].children
                if name not in children:
                    children.append(str(name))
        return self.model.resolve()

    def _at(self, path: Path_) -> str:
        return where(self.path, self.doc.line(path))

    def _group(self, name: str, body: Any, at: Path_) -> None:
        group = self.model.group(name, self.doc.line(at))
        if body is None:
            return
        if not isinstance(body, dict):
            raise InventoryError(f"{self._at(at)}: group {name!r}: expected a mapping with hosts, vars or children, "
                                 f"got {body!r}")
        unknown = [k for k in body if k not in ("hosts", "vars", "children")]
        if unknown:
            raise InventoryError(f"{self._at((*at, unknown[0]))}: group {name!r}: unknown field {unknown[0]!r}; "
                                 "expected hosts, vars or children")
        group_vars = body.get("vars") or {}
        if not isinstance(group_vars, dict):
            raise InventoryError(f"{self._at((*at, 'vars'))}: group {name!r} field 'vars': expected a mapping")
        group.vars.update({str(k): v for k, v in group_vars.items()})
        hosts = body.get("hosts") or {}
        if not isinstance(hosts, dict):
            raise InventoryError(f"{self._at((*at, 'hosts'))}: group {name!r} field 'hosts': expected a mapping of "
                                 "host names to their variables")
        for host_name, host_vars in hosts.items():
            host_line = self.doc.line((*at, "hosts", host_name))
            if host_vars is None:
                host_vars = {}
            if not isinstance(host_vars, dict):
                raise InventoryError(f"{where(self.path, host_line)}: host {host_name!r}: expected a mapping of "
                                     f"variables, got {host_vars!r}")
            for expanded in _expand_range(str(host_name), self.path, host_line or 0):
                self.model.add_host(name, expanded, host_line, {str(k): v for k, v in host_vars.items()})
        children = body.get("children") or {}
        if not isinstance(children, dict):
            raise InventoryError(f"{self._at((*at, 'children'))}: group {name!r} field 'children': expected a "
                                 "mapping of group names")
        for child, child_body in children.items():
            if str(child) not in group.children:
                group.children.append(str(child))
            self._group(str(child), child_body, (*at, "children", child))
