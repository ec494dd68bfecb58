"""Ansible YAML inventories, read as ansible-core's ``yaml`` plugin reads them.

``all: {vars, hosts: {NAME: {VARS}}, children: {GROUP: {...}}}``; other top-level groups are children of
``all``; a group may sit under several parents (its hosts and variables are merged); host names are host
patterns (``web[01:03]``, ``db:2222``). A file with a top-level ``plugin:`` is an inventory plugin's
configuration: graylift does not run plugins and says what to do instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from graylift.adapters.inventory.ansible import AnsibleModel, expand_pattern, where
from graylift.core.model import Host
from graylift.errors import InventoryError
from graylift.yamldoc import Document, Path_


class AnsibleYaml:
    def __init__(self, path: Path, doc: Document) -> None:
        self.path, self.doc = path, doc
        self.model = AnsibleModel(path)

    def parse(self, data: dict[str, Any]) -> list[Host]:
        if "plugin" in data:
            raise InventoryError(
                f"{self._at(('plugin',))}: this is the configuration of the inventory plugin {data['plugin']!r}; "
                "graylift does not run inventory plugins: export the hosts with `ansible-inventory -i "
                f"{self.path.name} --list --yaml > hosts.yml` and import hosts.yml")
        for name, body in data.items():
            self._group(str(name), body, (name,))
            if name != "all":
                self.model.add_child("all", str(name), self.doc.line((name,)))
        return self.model.resolve()

    def _at(self, path: Path_) -> str:
        return where(self.path, self.doc.line(path))

    def _group(self, name: str, body: Any, at: Path_) -> None:
        group = self.model.group(name, self.doc.line(at))
        if body is None:
            return
        if not isinstance(body, dict):
            raise InventoryError(f"{self._at(at)}: group {name!r}: expected a mapping with hosts, vars or children, "
                                 f"got {body!r:.100}")
        unknown = [k for k in body if k not in ("hosts", "vars", "children")]
        if unknown:
            raise InventoryError(f"{self._at((*at, unknown[0]))}: group {name!r}: unknown field {unknown[0]!r}; "
                                 "expected hosts, vars or children")
        group_vars = body.get("vars") or {}
        if not isinstance(group_vars, dict):
            raise InventoryError(f"{self._at((*at, 'vars'))}: group {name!r} field 'vars': expected a mapping")
        for key, value in group_vars.items():
            self.model.set_group_var(group.name, str(key), value, self.doc.line((*at, "vars", key)))
        hosts = body.get("hosts") or {}
        if not isinstance(hosts, dict):
            raise InventoryError(f"{self._at((*at, 'hosts'))}: group {name!r} field 'hosts': expected a mapping of "
                                 "host names to their variables")
        for pattern, host_vars in hosts.items():
            host_at = where(self.path, self.doc.line((*at, "hosts", pattern)))
            if host_vars is None:
                host_vars = {}
            if not isinstance(host_vars, dict):
                raise InventoryError(f"{host_at}: host {pattern!r}: expected a mapping of variables, "
                                     f"got {host_vars!r:.100}")
            names, port = expand_pattern(str(pattern), host_at)
            given = ({} if port is None else {"ansible_port": port}) | {str(k): v for k, v in host_vars.items()}
            for host_name in names:
                self.model.add_host(name, host_name, self.doc.line((*at, "hosts", pattern)), given, again_ok=True)
        children = body.get("children") or {}
        if not isinstance(children, dict):
            raise InventoryError(f"{self._at((*at, 'children'))}: group {name!r} field 'children': expected a "
                                 "mapping of group names")
        for child, child_body in children.items():
            self.model.add_child(name, str(child), self.doc.line((*at, "children", child)))
            self._group(str(child), child_body, (*at, "children", child))
