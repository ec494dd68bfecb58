"""A host as a pre-staging peer, through its shell (the PackagePeer port): free space, and a one-file HTTP server.

The server is ``python3`` on the host, started over SSH: it binds the host's own address on a random free port
and answers ``GET /<token>/<filename>`` with the archive of ``releases/<dir>`` (the one the host staged and
verified), 404 to anything else. The token (unguessable, one per phase) reaches it on stdin, never in its argv.
It detaches (its own session, stdio on /dev/null), prints ``<port> <pid>`` and serves until :meth:`stop`, or
until ``lifetime`` seconds pass (an alarm): a server whose controller died with it never outlives the phase by
much. Receivers verify the sha256 themselves (``ShellDeployDir.stage``): integrity never depends on the peer.
"""

from __future__ import annotations

import shlex

from graylift.errors import ArtifactError
from graylift.ports import Transport

MARKER = "graylift-peer-serve"
QUICK = 30.0
q = shlex.quote

SERVER = r"""
import http.server, os, signal, socket, sys
path, address, lifetime = sys.argv[2], sys.argv[3], int(float(sys.argv[4]))
want = "/" + sys.stdin.readline().strip() + "/" + os.path.basename(path)

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path != want or not os.path.isfile(path):
            self.send_error(404)
            return
        with open(path, "rb") as fh:
            self.send_response(200)
            self.send_header("Content-Length", str(os.fstat(fh.fileno()).st_size))
            self.send_header("Content-Type", "application/octet-stream")
            self.end_headers()
            self.connection.sendfile(fh)

    def log_message(self, *args):
        pass

class Server(http.server.ThreadingHTTPServer):
    address_family = socket.AF_INET6 if ":" in address else socket.AF_INET
    daemon_threads = True

server = Server((address, 0), Handler)
child = os.fork()
if child:
    print(server.server_address[1], child, flush=True)
    os._exit(0)
os.setsid()
null = os.open(os.devnull, os.O_RDWR)
for fd in (0, 1, 2):
    os.dup2(null, fd)
signal.alarm(max(1, lifetime))
server.serve_forever()
"""


class ShellPeer:
    def __init__(self, transport: Transport, deploy_dir: str) -> None:
        self.transport, self.root = transport, deploy_dir.rstrip("/")
        self.host = transport.host.name

    async def serve(self, name: str, filename: str, *, address: str, token: str, lifetime: float) -> tuple[int, int]:
        path = f"{self.root}/releases/{name}/{filename}"
        command = (f"[ -f {q(path)} ] || {{ echo 'nothing to serve: {path} is missing' >&2; exit 2; }}; "
                   f"command -v python3 >/dev/null || {{ echo 'python3 is needed on the host to serve peers' >&2; "
                   f"exit 127; }}; cd / && exec python3 -c {q(SERVER)} {MARKER} {q(path)} {q(address)} "
                   f"{lifetime:.0f}")
        out = (await self.transport.run(command, timeout=QUICK, stdin=token + "\n")).stdout.split()
        if len(out) != 2 or not all(word.isdigit() for word in out):
            raise ArtifactError(f"{self.host}: the peer server did not start (it said {' '.join(out)!r})")
        return int(out[0]), int(out[1])

    async def stop(self, pid: int) -> None:
        await self.transport.run(
            f"if grep -q {MARKER} /proc/{pid}/cmdline 2>/dev/null; then kill {pid}; fi; true", timeout=QUICK)

