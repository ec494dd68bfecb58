"""The hosts of an app in an environment (the built-in CMDB): the list, importing one, maintenance, clearing a
needs-attention mark, a host's timeline across releases, and the read-only survey of what each host runs."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request, Response

from graylift.api import answers as a
from graylift.api import schemas as s
from graylift.api.deps import ActorDep, desk_of
from graylift.auth import Action, InputError
from graylift.core.model import Host
from graylift.errors import InventoryError
from graylift.service import parse_hosts_file
from graylift.store.queries import HostVisit

router = APIRouter(prefix="/apps/{app}/envs/{env}", tags=["hosts"])


@router.get("/hosts", response_model=list[a.HostOut])
def hosts(request: Request, actor: ActorDep, app: s.NamePath, env: s.NamePath) -> list[Host]:
    return desk_of(request).hosts(actor, app, env)


@router.put("/hosts")
def import_hosts(request: Request, actor: ActorDep, app: s.NamePath, env: s.NamePath,
                 body: s.HostsIn, dry_run: bool = False) -> dict[str, Any]:
    """Replace the host list of app/env with the hosts given, or an inventory (YAML, Ansible INI or YAML).

    Hosts in maintenance stay so; hosts the running release uses cannot be removed. The answer says what was
    added, removed and changed (one line each in ``lines``); ``dry_run=true`` stores nothing."""
    desk = desk_of(request)
    desk.require(actor, Action.HOSTS, app, env)
    if (body.hosts is None) == (body.inventory is None):
        raise InputError("give either hosts (a list) or inventory (the text of an inventory file)")
    if body.hosts is not None:
        found = [Host(h.name, h.address, port=h.port, user=h.user, group=h.group, tags=dict(h.tags),
                      in_service=h.in_service) for h in body.hosts]
    else:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / f"inventory.{body.format}"
            path.write_text(body.inventory or "")
            try:
                found = parse_hosts_file(path)
            except InventoryError as exc:
                raise InputError(str(exc).replace(str(path), "inventory")) from None
    diff = desk.import_hosts(actor, app, env, found, dry_run=dry_run)
    return {"imported": diff.count, "dry_run": dry_run, "summary": diff.summary(), "lines": diff.lines(),
            "added": [h.name for h in diff.added], "removed": [h.name for h in diff.removed],
            "changed": [c.name for c in diff.changed], "kept_maintenance": list(diff.kept_maintenance)}


@router.post("/hosts/{host}/maintenance", status_code=204)
def maintenance(request: Request, actor: ActorDep, app: s.NamePath, env: s.NamePath, host: s.NamePath,
                body: s.MaintenanceIn) -> Response:
    desk_of(request).maintenance(actor, app, env, host, body.in_service)
    return Response(status_code=204)


@router.post("/hosts/{host}/clear")
def clear_host(request: Request, actor: ActorDep, app: s.NamePath, env: s.NamePath,
               host: s.NamePath) -> dict[str, bool]:
    return {"cleared": desk_of(request).clear_host(actor, app, env, host)}


@router.get("/hosts/{host}/timeline", response_model=list[HostVisit])
def host_timeline(request: Request, actor: ActorDep, app: s.NamePath, env: s.NamePath,
                  host: s.NamePath) -> list[HostVisit]:
    return desk_of(request).host_timeline(actor, app, env, host)


@router.post("/survey", response_model=list[a.SurveyOut])
async def survey(request: Request, actor: ActorDep, app: s.NamePath, env: s.NamePath,
                 body: s.SurveyIn) -> list[a.SurveyOut]:
    rows = await desk_of(request).survey(actor, app, env, body.version)
    return [a.SurveyOut(host=r.host.name, layout=r.layout, version=r.version, sha256=r.sha256, serving=r.serving,
                        would=r.would) for r in rows]
