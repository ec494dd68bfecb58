"""Host files for the built-in CMDB (`graylift hosts import`): graylift YAML, Ansible INI and Ansible YAML.

``load_hosts_file`` reads three formats, detected from the content:

* graylift YAML: ``hosts: [{name, address, port?, user?, group?, tags?: {...}, in_service?}]``
* Ansible INI inventory: ``[group]`` host lines ``name ansible_host=1.2.3.4 ansible_port=22 zone=a``,
  ``[group:vars]``, ``[group:children]``; hosts before any section are ungrouped.
* Ansible YAML inventory: ``all: {vars, hosts: {h: {...}}, children: {group: {...}}}``.

The Ansible formats are read as Ansible reads them (:mod:`graylift.adapters.inventory.ansible`); every host
of every format is checked by :func:`graylift.core.hosts.build_host`. Every error is an InventoryError naming
the file, the line and the field.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from graylift import yamldoc
from graylift.adapters.inventory.ansible import check_vars_dirs, where
from graylift.adapters.inventory.ansible_ini import SECTION, AnsibleIni
from graylift.adapters.inventory.ansible_yaml import AnsibleYaml
from graylift.core.hosts import build_host, check_unique
from graylift.core.model import Host
from graylift.errors import InventoryError


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
    if text.startswith("#!"):
        raise InventoryError(f"{path}:1: this is an inventory script; graylift does not run inventory scripts: "
                             f"export the hosts with `ansible-inventory -i {path.name} --list --yaml > hosts.yml` "
                             "and import hosts.yml")
    if _looks_like_ini(text, path):
        check_vars_dirs(path)
        hosts = AnsibleIni(path).parse(text)
    else:
        try:
            doc = yamldoc.load(text)
        except yamldoc.YamlError as exc:
            raise InventoryError(f"{where(path, exc.line)}: not valid YAML: {exc.message}") from None
        if doc.duplicates:
            first = doc.duplicates[0]
            raise InventoryError(f"{path}:{first.line}: duplicate key {first.key!r} (first at line {first.first_line})")
        data = doc.data
        if isinstance(data, dict) and "hosts" in data and "all" not in data and "plugin" not in data:
            hosts = _graylift_yaml(data, path, doc)
        elif isinstance(data, dict):
            check_vars_dirs(path)
            hosts = AnsibleYaml(path, doc).parse(data)
        elif data is None:
            hosts = []
        elif path.suffix.lower() in (".yml", ".yaml"):
            raise InventoryError(f"{path}: expected a mapping with `hosts:` (graylift) or `all:` (Ansible), "
                                 f"got a {type(data).__name__}")
        else:
            check_vars_dirs(path)
            hosts = AnsibleIni(path).parse(text)
    if not hosts:
        raise InventoryError(f"{path}: no hosts in the file")
    return hosts


def _looks_like_ini(text: str, path: Path) -> bool:
    if path.suffix.lower() in (".ini", ".cfg"):
        return True
    if path.suffix.lower() in (".yml", ".yaml", ".json"):
        return False
    return any(SECTION.match(line.rstrip()) for line in text.splitlines())


def _graylift_yaml(data: dict[str, Any], path: Path, doc: yamldoc.Document) -> list[Host]:
    """``hosts: [{name, address, port?, user?, group?, tags?, in_service?}]``; a field's error names its line."""
    extra = [k for k in data if k != "hosts"]
    if extra:
        raise InventoryError(f"{where(path, doc.line((extra[0],)))}: unknown top-level field {extra[0]!r}; "
                             "expected only `hosts:`")
    if not isinstance(data["hosts"], list):
        raise InventoryError(f"{where(path, doc.line(('hosts',)))}: field 'hosts': expected a list of hosts "
                             "(- name: ..., address: ...)")
    hosts, found_at = [], []
    for index, item in enumerate(data["hosts"]):
        def at(field: str, index: int = index) -> str:
            return where(path, doc.line(("hosts", index, field) if field else ("hosts", index)))

        hosts.append(build_host(item, at))
        found_at.append(at(""))
    return check_unique(hosts, found_at)
