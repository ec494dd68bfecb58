"""A re-import of a host list: what it adds, removes and changes, and the list to store. Pure.

An import replaces the host list of an app/env, but a host put in maintenance with `graylift hosts
maintenance` stays in maintenance: the file cannot tell "in service" from "not said", so only
`hosts maintenance --off` brings it back. A host the file itself marks out of service is out.

>>> old = [Host("web-1", "10.0.0.1"), Host("web-2", "10.0.0.2", in_service=False), Host("web-3", "10.0.0.3")]
>>> new = [Host("web-1", "10.0.0.1", port=2222), Host("web-2", "10.0.0.2"), Host("web-4", "10.0.0.4")]
>>> d = diff_hosts(old, new)
>>> [h.name for h in d.added], [h.name for h in d.removed], d.kept_maintenance
(['web-4'], ['web-3'], ('web-2',))
>>> print("\\n".join(d.lines()))
+ web-4 root@10.0.0.4:22 group default
- web-3 root@10.0.0.3:22 group default
~ web-1: port 22 -> 2222
= web-2: stays in maintenance (`graylift hosts maintenance web-2 --off` puts it back)
>>> [(h.name, h.in_service) for h in d.result]
[('web-1', True), ('web-2', False), ('web-4', True)]
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

from graylift.core.model import Host

_FIELDS = ("address", "port", "user", "group")


@dataclass(frozen=True)
class HostChange:
    name: str
    fields: tuple[tuple[str, str | None, str | None], ...]  # (field, before, after); a tag is "tags.NAME"


@dataclass(frozen=True)
class HostListDiff:
    added: tuple[Host, ...]
    removed: tuple[Host, ...]
    changed: tuple[HostChange, ...]
    kept_maintenance: tuple[str, ...]  # in maintenance before; the file would have put them back
    unchanged: int
    result: tuple[Host, ...]  # the new host list, in the file's order

    @property
    def count(self) -> int:
        """How many hosts the list has after the import."""
        return len(self.result)

    def lines(self) -> list[str]:
        """One line per host that is added (+), removed (-), changed (~) or kept in maintenance (=)."""
        return ([f"+ {_show(h)}" for h in self.added] + [f"- {_show(h)}" for h in self.removed]
                + [f"~ {c.name}: " + "; ".join(f"{f} {_or_none(a)} -> {_or_none(b)}" for f, a, b in c.fields)
                   for c in self.changed]
                + [f"= {n}: stays in maintenance (`graylift hosts maintenance {n} --off` puts it back)"
                   for n in self.kept_maintenance])

    def summary(self) -> str:
        return (f"{len(self.added)} added, {len(self.removed)} removed, {len(self.changed)} changed, "
                f"{self.unchanged} unchanged")


def diff_hosts(current: Sequence[Host], imported: Sequence[Host]) -> HostListDiff:
    """What replacing ``current`` by ``imported`` does; ``result`` keeps the maintenance flags of ``current``."""
    before = {h.name: h for h in current}
    names = {h.name for h in imported}
    result, changed, kept = [], [], []
    for new in imported:
        old = before.get(new.name)
        if old is None:
            result.append(new)
            continue
        if not old.in_service and new.in_service:
            new = dataclasses.replace(new, in_service=False)
            kept.append(new.name)
        result.append(new)
        fields = _changes(old, new)
        if fields:
            changed.append(HostChange(new.name, fields))
    return HostListDiff(
        added=tuple(h for h in imported if h.name not in before),
        removed=tuple(h for h in current if h.name not in names),
        changed=tuple(changed), kept_maintenance=tuple(kept),
        unchanged=sum(1 for h in imported if h.name in before) - len(changed),
        result=tuple(result))


def _changes(old: Host, new: Host) -> tuple[tuple[str, str | None, str | None], ...]:
    fields: list[tuple[str, str | None, str | None]] = [
        (f, str(getattr(old, f)), str(getattr(new, f))) for f in _FIELDS if getattr(old, f) != getattr(new, f)]
    for tag in sorted(old.tags.keys() | new.tags.keys()):
        if old.tags.get(tag) != new.tags.get(tag):
            fields.append((f"tags.{tag}", old.tags.get(tag), new.tags.get(tag)))
    if old.in_service != new.in_service:
        fields.append(("in_service", _yes(old.in_service), _yes(new.in_service)))
    return tuple(fields)


def _show(host: Host) -> str:
    return f"{host.name} {host.user}@{host.address}:{host.port} group {host.group}"


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def _or_none(value: str | None) -> str:
    return "(none)" if value is None else repr(value) if value == "" or value.strip() != value else value
