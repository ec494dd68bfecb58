"""Host files for the built-in CMDB (`graylift hosts import`): graylift YAML, Ansible INI and Ansible YAML.

``load_hosts_file`` reads three formats, detected from the content:

* graylift YAML: ``hosts: [{name, address, port?, user?, group?, tags?: {...}, in_service?}]``
* Ansible INI inventory: ``[group]`` host lines ``name ansible_host=1.2.3.4 ansible_port=22 zone=a``,
  ``[group:vars]``, ``[group:children]``; hosts before any section are ungrouped.
* Ansible YAML inventory: ``all: {vars, hosts: {h: {...}}, children: {group: {...}}}``.

In the Ansible formats variables are inherited (all -> parent group -> child group -> host line, the later
winning); ``ansible_host``/``ansible_port``/``ansible_user`` set the address, port and user, ``in_service``
(true/false) marks a host out of service, every other variable becomes a tag. A host's group is the most
deeply nested group it belongs to (the first listed on a tie); a host only in ``all``/``ungrouped`` gets
group ``default``. A host without ``ansible_host`` is reached at its name when that is an IP address or a
dotted DNS name. Every error is an InventoryError naming the file, the line and the field.
"""

from __future__ import annotations

import ipaddress
import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from graylift.core.model import Host, is_plain_name
from graylift.errors import InventoryError

DEFAULT_GROUP = "default"
HOST_FIELDS = ("name", "address", "port", "user", "group", "tags", "in_service")
_USER = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,31}$")
_ADDRESS = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]{0,252}$")
_SECTION = re.compile(r"^\[([^\]\s]+)\]\s*$")
_RANGE = re.compile(r"\[([0-9]+|[a-z]):([0-9]+|[a-z])(?::([0-9]+))?\]")
_TRUE, _FALSE = {"true", "yes", "on", "1"}, {"false", "no", "off", "0"}


def load_hosts_file(path: Path) -> list[Host]:
    """Read a graylift YAML, Ansible INI or Ansible YAML host file (detected from its content)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise InventoryError(f"{path}: no such file") from exc
    except UnicodeDecodeError as exc:
        raise InventoryError(f"{path}: not a UTF-8 text file ({exc.reason} at byte {exc.start})") from exc
    except OSError as exc:
        raise InventoryError(f"{path}: cannot read: {exc.strerror}") from exc
    if _looks_like_ini(text, path):
        hosts = _AnsibleIni(path).parse(text)
    else:
        data = _load_yaml(text, path)
        if isinstance(data, dict) and "hosts" in data and "all" not in data:
            if not isinstance(data["hosts"], list):
                raise InventoryError(
                    f"{_where(path, _line_of(data, 'hosts'))}: field 'hosts': expected a list "
                    "of hosts (- name: ..., address: ...)"
                )
            hosts = _parse_graylift_yaml(data, path)
        elif isinstance(data, dict):
            hosts = _AnsibleYaml(path).parse(data)
        elif data is None:
            hosts = []
        elif path.suffix.lower() in (".yml", ".yaml"):
            raise InventoryError(
                f"{path}: expected a mapping with `hosts:` (graylift) or `all:` (Ansible), "
                f"got a {type(data).__name__}"
            )
        else:
            hosts = _AnsibleIni(path).parse(text)
    if not hosts:
        raise InventoryError(f"{path}: no hosts in the file")
    return hosts


def _looks_like_ini(text: str, path: Path) -> bool:
    if path.suffix.lower() in (".ini", ".cfg"):
        return True
    if path.suffix.lower() in (".yml", ".yaml", ".json"):
        return False
    return any(_SECTION.match(line.rstrip()) for line in text.splitlines())


# ---------------------------------------------------------------------- shared validation
def _where(path: Path, line: int | None) -> str:
    return f"{path}:{line}" if line else str(path)


@dataclass
class _Raw:
    """A host as read, before validation."""

    name: str
    line: int | None
    address: Any = None
    port: Any = None
    user: Any = None
    group: Any = None
    tags: dict[str, Any] = field(default_factory=dict)
    in_service: Any = None


def _build_host(
    raw: _Raw,
    path: Path,
    *,
    address_field: str = "address",
    port_field: str = "port",
    user_field: str = "user",
    name_is_address: bool = False,
) -> Host:
    where = _where(path, raw.line)

    def fail(fld: str, expected: str, got: Any) -> InventoryError:
        return InventoryError(f"{where}: host {raw.name!r} field {fld!r}: expected {expected}, got {got!r}")

    if not isinstance(raw.name, str) or not is_plain_name(raw.name):
        raise InventoryError(
            f"{where}: host name {raw.name!r} is not a plain name "
            "(letters, digits, '.', '_', '+', '-'; starting with a letter or digit)"
        )
    address = raw.address
    if address is None and name_is_address and _is_ip_or_dns(raw.name):
        address = raw.name
    if address is None or address == "":
        hint = f" (set {address_field}=ADDRESS)" if name_is_address else ""
        raise InventoryError(f"{where}: host {raw.name!r} has no {address_field!r}{hint}")
    address = str(address)
    if not _valid_address(address):
        raise fail(address_field, "an IP address or DNS name", address)
    port = 22
    if raw.port is not None:
        port = _int_or_none(raw.port)  # type: ignore[assignment]
        if port is None or not 1 <= port <= 65535:
            raise fail(port_field, "a port number 1-65535", raw.port)
    user = "root" if raw.user is None else raw.user
    if not isinstance(user, str) or not _USER.match(user):
        raise fail(user_field, "a login name (letters, digits, '_', '.', '-')", user)
    group = DEFAULT_GROUP if raw.group is None else raw.group
    if not isinstance(group, str) or not is_plain_name(group):
        raise fail("group", "a plain group name", group)
    in_service = True
    if raw.in_service is not None:
        parsed = parse_flag(raw.in_service)
        if parsed is None:
            raise fail("in_service", "true or false", raw.in_service)
        in_service = parsed
    return Host(
        name=raw.name,
        address=address,
        port=port,
        user=user,
        group=group,
        tags={str(k): tag_value(v) for k, v in raw.tags.items()},
        in_service=in_service,
    )


def _int_or_none(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


def parse_flag(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    return True if text in _TRUE else False if text in _FALSE else None


def tag_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True)
    return "" if value is None else str(value)


def _is_ip_or_dns(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        return "." in name and _valid_address(name)


def _valid_address(address: str) -> bool:
    try:
        ipaddress.ip_address(address)
        return True
    except ValueError:
        return bool(_ADDRESS.match(address)) and ".." not in address and not address.endswith("-")


def _check_unique(hosts: list[tuple[Host, int | None]], path: Path) -> list[Host]:
    seen: dict[str, int | None] = {}
    for host, line in hosts:
        if host.name in seen:
            first = f" (first at line {seen[host.name]})" if seen[host.name] else ""
            raise InventoryError(f"{_where(path, line)}: duplicate host name {host.name!r}{first}")
        seen[host.name] = line
    return [h for h, _ in hosts]


# ---------------------------------------------------------------------- YAML with line numbers
class _LineDict(dict[Any, Any]):
    line: int = 0
    key_lines: dict[Any, int]


class _LineLoader(yaml.SafeLoader):
    pass


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> _LineDict:
    loader.flatten_mapping(node)
    result = _LineDict()
    result.line = node.start_mark.line + 1
    result.key_lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, (str, int, float, bool)) and key is not None:
            raise _YamlFieldError(
                key_node.start_mark.line + 1, f"a mapping key must be a plain value, got {key!r}"
            )
        if key in result:
            raise _YamlFieldError(
                key_node.start_mark.line + 1, f"duplicate key {key!r} (first at line {result.key_lines[key]})"
            )
        result.key_lines[key] = key_node.start_mark.line + 1
        result[key] = loader.construct_object(value_node, deep=True)
    return result


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


class _YamlFieldError(Exception):
    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line, self.message = line, message


def _load_yaml(text: str, path: Path) -> Any:
    try:
        return yaml.load(text, Loader=_LineLoader)
    except _YamlFieldError as exc:
        raise InventoryError(f"{path}:{exc.line}: {exc.message}") from exc
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f":{mark.line + 1}" if mark else ""
        raise InventoryError(f"{path}{line}: not valid YAML: {exc.problem or exc.context}") from exc
    except yaml.YAMLError as exc:
        raise InventoryError(f"{path}: not valid YAML: {exc}") from exc


def _line_of(mapping: Any, key: Any = None) -> int | None:
    if isinstance(mapping, _LineDict):
        return mapping.key_lines.get(key, mapping.line) if key is not None else mapping.line
    return None


# ---------------------------------------------------------------------- (a) graylift YAML
def _parse_graylift_yaml(data: dict[str, Any], path: Path) -> list[Host]:
    extra = [k for k in data if k != "hosts"]
    if extra:
        raise InventoryError(
            f"{_where(path, _line_of(data, extra[0]))}: unknown top-level field {extra[0]!r}; "
            "expected only `hosts:`"
        )
    hosts: list[tuple[Host, int | None]] = []
    for index, item in enumerate(data["hosts"]):
        if not isinstance(item, dict):
            raise InventoryError(
                f"{path}: hosts[{index}]: expected a mapping with name and address, got {item!r}"
            )
        line = _line_of(item)
        unknown = [k for k in item if k not in HOST_FIELDS]
        if unknown:
            raise InventoryError(
                f"{_where(path, _line_of(item, unknown[0]))}: hosts[{index}]: unknown field "
                f"{unknown[0]!r}; expected one of {', '.join(HOST_FIELDS)}"
            )
        if "name" not in item:
            raise InventoryError(f"{_where(path, line)}: hosts[{index}]: missing field 'name'")
        tags = item.get("tags") or {}
        if not isinstance(tags, dict):
            raise InventoryError(
                f"{_where(path, _line_of(item, 'tags'))}: host {item['name']!r} field 'tags': "
                f"expected a mapping of names to values, got {tags!r}"
            )
        raw = _Raw(
            name=item["name"],
            line=line,
            address=item.get("address"),
            port=item.get("port"),
            user=item.get("user"),
            group=item.get("group"),
            tags=dict(tags),
            in_service=item.get("in_service"),
        )
        hosts.append((_build_host(raw, path), line))
    return _check_unique(hosts, path)


# ---------------------------------------------------------------------- Ansible (shared model)
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
                    f"{_where(self.path, line)}: group name {name!r} is not a plain name "
                    "(letters, digits, '.', '_', '+', '-')"
                )
            self.groups[name] = _Group(name)
            self.group_lines[name] = line
        return self.groups[name]

    def add_host(self, group: str, name: str, line: int | None, host_vars: dict[str, Any]) -> None:
        g = self.group(group, line)
        if name in g.hosts:
            raise InventoryError(
                f"{_where(self.path, line)}: duplicate host name {name!r} in group {group!r}"
            )
        g.hosts.append(name)
        host = self.hosts.setdefault(name, _AnsibleHost(name, line))
        for key, value in host_vars.items():
            if key in ("ansible_host", "ansible_ssh_host") and key in host.vars and host.vars[key] != value:
                raise InventoryError(
                    f"{_where(self.path, line)}: host {name!r} field {key!r}: {value!r} differs from "
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
            line = host.line
            addr_key = (
                "ansible_ssh_host"
                if "ansible_ssh_host" in merged and "ansible_host" not in merged
                else "ansible_host"
            )
            raw = _Raw(
                name=name,
                line=line,
                group=group,
                address=merged.pop("ansible_host", merged.pop("ansible_ssh_host", None)),
                port=merged.pop("ansible_port", merged.pop("ansible_ssh_port", None)),
                user=merged.pop("ansible_user", merged.pop("ansible_ssh_user", None)),
                in_service=merged.pop("in_service", None),
                tags={k: v for k, v in merged.items() if not str(k).startswith("ansible_")},
            )
            built.append(
                _build_host(
                    raw,
                    self.path,
                    address_field=addr_key,
                    port_field="ansible_port",
                    user_field="ansible_user",
                    name_is_address=True,
                )
            )
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
                        f"{_where(self.path, self.group_lines.get(name))}: group {name!r} "
                        f"lists child group {child!r}, which is not defined"
                    )
        depth: dict[str, int] = {}

        def visit(name: str, stack: tuple[str, ...]) -> int:
            if name in stack:
                cycle = " -> ".join((*stack[stack.index(name) :], name))
                raise InventoryError(
                    f"{_where(self.path, self.group_lines.get(name))}: groups form a cycle: {cycle}"
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
class _AnsibleIni:
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
        match = _SECTION.match(stripped)
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
class _AnsibleYaml:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.model = _AnsibleModel(path)

    def parse(self, data: dict[str, Any]) -> list[Host]:
        for name, body in data.items():
            self._group(str(name), body, _line_of(data, name))
            if name != "all":
                children = self.model.groups["all"].children
                if name not in children:
                    children.append(str(name))
        return self.model.resolve()

    def _group(self, name: str, body: Any, line: int | None) -> None:
        group = self.model.group(name, line)
        if body is None:
            return
        if not isinstance(body, dict):
            raise InventoryError(
                f"{_where(self.path, line)}: group {name!r}: expected a mapping with hosts, "
                f"vars or children, got {body!r}"
            )
        unknown = [k for k in body if k not in ("hosts", "vars", "children")]
        if unknown:
            raise InventoryError(
                f"{_where(self.path, _line_of(body, unknown[0]))}: group {name!r}: unknown "
                f"field {unknown[0]!r}; expected hosts, vars or children"
            )
        group_vars = body.get("vars") or {}
        if not isinstance(group_vars, dict):
            raise InventoryError(
                f"{_where(self.path, _line_of(body, 'vars'))}: group {name!r} field 'vars': "
                "expected a mapping"
            )
        group.vars.update({str(k): v for k, v in group_vars.items()})
        hosts = body.get("hosts") or {}
        if not isinstance(hosts, dict):
            raise InventoryError(
                f"{_where(self.path, _line_of(body, 'hosts'))}: group {name!r} field 'hosts': "
                "expected a mapping of host names to their variables"
            )
        for host_name, host_vars in hosts.items():
            host_line = _line_of(hosts, host_name)
            if host_vars is None:
                host_vars = {}
            if not isinstance(host_vars, dict):
                raise InventoryError(
                    f"{_where(self.path, host_line)}: host {host_name!r}: expected a mapping "
                    f"of variables, got {host_vars!r}"
                )
            for expanded in _expand_range(str(host_name), self.path, host_line or 0):
                self.model.add_host(name, expanded, host_line, {str(k): v for k, v in host_vars.items()})
        children = body.get("children") or {}
        if not isinstance(children, dict):
            raise InventoryError(
                f"{_where(self.path, _line_of(body, 'children'))}: group {name!r} field "
                "'children': expected a mapping of group names"
            )
        for child, child_body in children.items():
            if str(child) not in group.children:
                group.children.append(str(child))
            self._group(str(child), child_body, _line_of(children, child))
