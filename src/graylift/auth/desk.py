"""The desk: every action a person or a pipeline takes through the server, in one place.

Each method checks the actor's role on the app x environment (:mod:`graylift.auth.roles`), the freeze windows
and the approval rule (:mod:`graylift.auth.rules`), does the work through the service, and appends one audit
entry with who, what, when, from where and the outcome (denials and refusals too). The HTTP API, the console
and the CLI through the server all call it, so the same rules hold everywhere.

Approvals cannot be bypassed: where an environment needs them, a release is first an immutable *request*;
the release is created from the request's own fields only when enough people other than the requester
approved it. Resume and retry continue that same release; any new release (or a rollback to a version that
never went live there) is a new request.
"""

from __future__ import annotations

import asyncio
from typing import Any

from graylift.auth.accounts import AccountDesk
from graylift.auth.releases import ReleaseDesk


class Desk(ReleaseDesk, AccountDesk):
    """The one door: every action through the server, by the concept it is about (:mod:`.releases`,
    :mod:`.approvals`, :mod:`.accounts`; the role check and the audit: :mod:`.base`)."""

    def run(self, coro: Any) -> Any:
        """Run a coroutine of the desk from synchronous code (the CLI)."""
        return asyncio.run(coro)

