"""Naming the graylift server to talk to (``--server URL``, GRAYLIFT_SERVER, the client file): cheap to import,
so the CLI learns whether it is remote without importing the HTTP client."""

from __future__ import annotations

import os
from pathlib import Path

SERVER_ENV, TOKEN_ENV = "GRAYLIFT_SERVER", "GRAYLIFT_TOKEN"
CLIENT_FILE = Path("~/.config/graylift/client.yaml")


def take_server_option(argv: list[str]) -> list[str]:
    """``--server URL`` anywhere before the command's own arguments: set it as GRAYLIFT_SERVER and drop it."""
    out, i = [], 0
    while i < len(argv):
        if argv[i] == "--server" and i + 1 < len(argv):
            os.environ[SERVER_ENV] = argv[i + 1]
            i += 2
            continue
        if argv[i].startswith("--server="):
            os.environ[SERVER_ENV] = argv[i].split("=", 1)[1]
        else:
            out.append(argv[i])
        i += 1
    return out


__all__ = ["CLIENT_FILE", "SERVER_ENV", "TOKEN_ENV", "take_server_option"]
