"""A CMDB answering JSON host lists: ``routes[path] = (status, body)``, anything else a 404 "no such inventory"
(or ``default``, when set)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .base import FakeServer, Request, Response


@dataclass
class FakeCmdb(FakeServer):
    routes: dict[str, tuple[int, Any]] = field(default_factory=dict)
    default: tuple[int, Any] = (404, {"detail": "no such inventory"})

    def handle(self, request: Request) -> Response:
        status, body = self.routes.get(request.path, self.default)
        return Response(status, body)

    @property
    def seen(self) -> list[tuple[str, str | None]]:
        """(path, Authorization header) of every request, in order."""
        return [(r.path, r.headers.get("authorization")) for r in self.requests]
