"""The JSON API under ``/api/v1``. Thin: every route authenticates (:func:`graylift.api.deps.actor`) and calls
the desk, which checks the role, the freeze windows and the approvals, and audits. One module a concept:
:mod:`.releases` (apps, plans, releases, their events and approvals), :mod:`.hosts` (the CMDB),
:mod:`.admin` (who you are, users and tokens, policies and freezes, webhooks, the audit log)."""

from fastapi import APIRouter

from graylift.api.routes import admin, hosts, releases

router = APIRouter(prefix="/api/v1")
for part in (admin, releases, hosts):
    router.include_router(part.router)

__all__ = ["router"]
