"""Ansible INI inventories, read line by line as ansible-core's ``ini`` plugin reads them.

* ``[group]``, ``[group:vars]``, ``[group:children]``, a comment after a header; lines before any header
  are ungrouped hosts; ``#`` and ``;`` start comment lines.
* A host line is split like a shell line (quotes group words, ``#`` starts a comment): the host pattern
  (``web[01:03]``, ``db:2222``, ``[2001:db8::1]:22``) then ``key=value`` words.
* A ``[group:vars]`` line is ``key = value`` split at the first ``=``, the rest of the line kept as it is
  (spaces, quotes inside, a ``#``: Ansible keeps them too).
* A value that is a Python literal (``8080``, ``True``, ``['a', 'b']``, ``"quoted"``) is that value, as in Ansible.
* A group named in ``:children`` or ``:vars`` must have its own ``[group]`` or ``[group:children]`` section.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

from graylift.adapters.inventory.ansible import AnsibleModel, expand_pattern, literal, where
from graylift.core.model import Host
from graylift.errors import InventoryError

SECTION = re.compile(r"^\[([^:\]\s]+)(?::(\w+))?\]\s*(?:#.*)?$")
_HEADER_LIKE = re.compile(r"^\[[^\]]*\](\s|$)")  # not a host line such as [2001:db8::1]:2222
_GROUP_NAME = re.compile(r"^([^:\]\s]+)\s*(?:#.*)?$")


class AnsibleIni:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.model = AnsibleModel(path)

    def parse(self, text: str) -> list[Host]:
        section, kind = "ungrouped", "hosts"
        for number, line in enumerate(text.splitlines(), start=1):
            stripped = line.strip()
            if not stripped or stripped.startswith(("#", ";")):
                continue
            if stripped.startswith("[") and (header := self._section(stripped, number)) is not None:
                section, kind = header
                continue
            if kind == "hosts":
                self._host_line(section, stripped, number)
            elif kind == "vars":
                key, value = self._key_value(stripped, number, f"[{section}:vars]", strip=True)
                self.model.set_group_var(section, key, value, number)
            else:
                match = _GROUP_NAME.match(stripped)
                if not match:
                    raise InventoryError(f"{self.path}:{number}: [{section}:children] expects one group name "
                                         f"per line, got {stripped!r}")
                self.model.add_child(section, match.group(1), number)
        return self.model.resolve()

    def _section(self, stripped: str, number: int) -> tuple[str, str] | None:
        match = SECTION.match(stripped)
        if not match:
            if _HEADER_LIKE.match(stripped) or "]" not in stripped:
                raise InventoryError(f"{self.path}:{number}: expected a section header like [web], [web:vars] "
                                     f"or [web:children] (a comment after it starts with '#'), got {stripped!r}")
            return None  # a host line: [2001:db8::1]:2222
        name, kind = match.group(1), match.group(2) or "hosts"
        if kind not in ("hosts", "vars", "children"):
            raise InventoryError(f"{self.path}:{number}: unknown section kind {kind!r} in {stripped!r}; "
                                 "expected [group], [group:vars] or [group:children]")
        self.model.group(name, number, declare=kind != "vars")
        return name, kind

    def _host_line(self, section: str, stripped: str, number: int) -> None:
        try:
            words = shlex.split(stripped, comments=True)
        except ValueError as exc:
            raise InventoryError(f"{self.path}:{number}: cannot parse host line ({exc}): {stripped}") from None
        if not words:
            return
        names, port = expand_pattern(words[0], where(self.path, number))
        host_vars: dict[str, Any] = {} if port is None else {"ansible_port": port}
        for word in words[1:]:
            key, value = self._key_value(word, number, f"host {words[0]!r}", strip=False)
            host_vars[key] = value
        for name in names:
            self.model.add_host(section, name, number, host_vars)

    def _key_value(self, text: str, number: int, who: str, *, strip: bool) -> tuple[str, Any]:
        key, sep, value = text.partition("=")
        if strip:
            key, value = key.strip(), value.strip()
        if not sep or not key:
            raise InventoryError(f"{self.path}:{number}: {who}: expected key=value, got {text!r}")
        return key, literal(value)
