"""An artifact repository (a Nexus / Artifactory "raw" repository, or any file server) that may require
credentials: ``scheme`` "basic" (``username`` / ``password``), "bearer" (``token``) or None; anything else
is a 401 with ``WWW-Authenticate``. ``head_allowed`` False answers HEAD with 405 (a server without HEAD)."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field

from .base import FakeServer, Request, Response


@dataclass
class FakeArtifactServer(FakeServer):
    files: dict[str, bytes] = field(default_factory=dict)
    scheme: str | None = None
    username: str = ""
    password: str = ""
    token: str = ""
    head_allowed: bool = True

    def authorized(self, request: Request) -> bool:
        header = request.headers.get("authorization")
        if self.scheme == "basic":
            return header == "Basic " + base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
        if self.scheme == "bearer":
            return header == f"Bearer {self.token}"
        return True

    def handle(self, request: Request) -> Response:
        if request.method == "HEAD" and not self.head_allowed:
            return Response(405, b"")
        if not self.authorized(request):
            return Response(401, b"authentication required\n", headers={"WWW-Authenticate": 'Basic realm="repo"'})
        if request.path in self.files:
            return Response(200, self.files[request.path], "application/octet-stream")
        return Response(404, b"no such file\n", "text/plain")
