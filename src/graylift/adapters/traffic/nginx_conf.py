"""Pure parsers for nginx configs: where an upstream's ``server`` lines live, and the ``down`` toggle.

Two layouts are common, and both are found from the output of ``nginx -T`` (every file of the config
nginx would load, each after a ``# configuration file <path>:`` header):

(a) the include holds the whole block (``include upstreams/*.conf;`` at ``http`` level)::

        upstream shop {
            server 10.0.0.11:8080 max_fails=3;
            server 10.0.0.12:8080 down;
        }

(b) nginx.conf holds the block and includes a file of bare ``server`` lines inside it::

        upstream shop {                     # in nginx.conf
            include upstreams/shop.conf;    # holds only "server 10.0.0.11:8080;" lines
            keepalive 16;
        }

>>> files = parse_dump("# configuration file /etc/nginx/nginx.conf:\\n"
...                    "upstream shop {\\n    include up/shop.conf;\\n}\\n\\n"
...                    "# configuration file /etc/nginx/up/shop.conf:\\nserver 10.0.0.11:8080;\\n\\n")
>>> layout = find_layout(files, "shop")
>>> layout.inside, layout.file_for(["10.0.0.11:8080"])
(True, '/etc/nginx/up/shop.conf')

Lines are read one directive per line (the opening ``{`` on the ``upstream`` line, ``}`` on its own).
"""

from __future__ import annotations

import fnmatch
import posixpath
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from graylift.core.model import Host

_SERVER_LINE = re.compile(r"^(?P<indent>\s*)server\s+(?P<address>[^\s;]+)(?P<params>[^;#]*);(?P<rest>.*)$")
_UPSTREAM_LINE = re.compile(r"^\s*upstream\s+(?P<name>[^\s{]+)\s*\{\s*(#.*)?$")
_INCLUDE_LINE = re.compile(r"""^\s*include\s+["']?(?P<path>[^\s;"']+)["']?\s*;""")
_DUMP_HEADER = re.compile(r"^# configuration file (.+):\n", re.MULTILINE)


def render_upstream(upstream: str, hosts: Sequence[Host], port: int, *, server_params: str = "",
                    keepalive: int | None = None, down: frozenset[str] = frozenset()) -> str:
    """The include graylift seeds when none exists: one ``server`` line per host (by address)."""
    params = f" {server_params.strip()}" if server_params.strip() else ""
    lines = ["# managed by graylift: one server per line; graylift only toggles 'down'",
             f"upstream {upstream} {{"]
    for host in hosts:
        flag = " down" if host.name in down else ""
        lines.append(f"    server {host.address}:{port}{params}{flag};")
    if keepalive:
        lines.append(f"    keepalive {keepalive};")
    lines.append("}")
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class ServerLine:
    index: int  # line number (0-based) in the file
    address: str
    down: bool


def _server(line: str) -> ServerLine | None:
    match = _SERVER_LINE.match(line)
    if match is None:
        return None
    return ServerLine(0, match.group("address"), "down" in match.group("params").split())


def _block_lines(text: str, upstream: str | None) -> list[tuple[int, str]] | None:
    """(index, line) of the body of ``upstream <name> {`` (None: not in the text); all lines for None."""
    lines = text.splitlines()
    if upstream is None:
        return list(enumerate(lines))
    body: list[tuple[int, str]] | None = None
    for index, line in enumerate(lines):
        if body is None:
            match = _UPSTREAM_LINE.match(line)
            if match and match.group("name") == upstream:
                body = []
            continue
        if line.strip().startswith("}"):
            return body
        body.append((index, line))
    return body


def find_server(text: str, upstream: str | None, addresses: Sequence[str]) -> ServerLine | None:
    """The first ``server`` line for one of ``addresses`` inside ``upstream <name> { ... }``, or anywhere in
    the text when ``upstream`` is None (a file of bare server lines, included inside the block).

    Raises ValueError when the upstream block is not in the text.
    """
    body = _block_lines(text, upstream)
    if body is None:
        raise ValueError(f"no 'upstream {upstream} {{' line (one block, opening brace on its line)")
    for index, line in body:
        server = _server(line)
        if server is not None and server.address in addresses:
            return ServerLine(index, server.address, server.down)
    return None


def toggle_down(text: str, line: ServerLine, down: bool) -> str:
    """The text with the ``down`` flag of one server line set or cleared, everything else untouched."""
    lines = text.splitlines(keepends=True)
    raw = lines[line.index]
    ending = raw[len(raw.rstrip("\r\n")):]
    match = _SERVER_LINE.match(raw.rstrip("\r\n"))
    assert match is not None
    params = [p for p in match.group("params").split() if p != "down"]
    if down:
        params.append("down")
    joined = "".join(" " + p for p in params)
    lines[line.index] = (f"{match.group('indent')}server {match.group('address')}{joined};"
                         f"{match.group('rest')}{ending}")
    return "".join(lines)


def parse_dump(output: str) -> dict[str, str]:
    """``nginx -T``'s stdout as {file path: its text}, in nginx's order (the main config first).

    nginx writes each file as ``# configuration file <path>:\\n`` + its text + ``\\n``.
    """
    parts = _DUMP_HEADER.split(output)
    files: dict[str, str] = {}
    for path, text in zip(parts[1::2], parts[2::2], strict=True):
        files.setdefault(path, text[:-1] if text.endswith("\n") else text)
    return files


@dataclass(frozen=True)
class UpstreamLayout:
    upstream: str
    upstream_file: str  # the file with ``upstream <name> {``
    server_files: tuple[str, ...]  # the files whose server lines belong to the upstream
    servers: Mapping[str, tuple[str, bool]]  # address as written -> (file holding its line, down)

    @property
    def inside(self) -> bool:
        """True for layout (b): the servers come from files included inside the block."""
        return self.server_files != (self.upstream_file,)

    def file_for(self, addresses: Sequence[str]) -> str | None:
        return next((self.servers[a][0] for a in addresses if a in self.servers), None)

    def block_in(self, path: str) -> str | None:
        """What to pass to ``find_server`` for a file: the upstream's name, or None for a bare include."""
        return self.upstream if path == self.upstream_file else None

    def describe(self) -> str:
        if not self.inside:
            return f"upstream {self.upstream} with its servers in {self.upstream_file} (whole block in one file)"
        return (f"upstream {self.upstream} in {self.upstream_file}, servers in {', '.join(self.server_files)} "
                "(include inside upstream)")


def _matches(pattern: str, path: str) -> bool:
    return fnmatch.fnmatchcase(path, pattern) if any(c in pattern for c in "*?[") else path == pattern


def find_layout(files: Mapping[str, str], upstream: str) -> UpstreamLayout:
    """Where ``upstream``'s block and its server lines are, in the files ``parse_dump`` returned.

    A relative ``include`` is taken from the main config's directory (nginx's conf prefix with ``-c``).
    Raises ValueError when no file has the block.
    """
    found = next(((path, body) for path, text in files.items()
                  if (body := _block_lines(text, upstream)) is not None), None)
    if found is None:
        raise ValueError(f"no 'upstream {upstream} {{' block in the {len(files)} file(s) nginx loads "
                         "(one block, opening brace on its line)")
    path, body = found
    prefix = posixpath.dirname(next(iter(files)))
    sources: list[tuple[str, list[str]]] = []  # (file, its lines that belong to the upstream)
    direct = [line for _, line in body if _server(line) is not None]
    if direct:
        sources.append((path, direct))
    for _, line in body:
        include = _INCLUDE_LINE.match(line)
        if include is not None:
            pattern = posixpath.normpath(posixpath.join(prefix, include.group("path")))
            sources += [(other, text.splitlines()) for other, text in files.items() if _matches(pattern, other)]
    servers: dict[str, tuple[str, bool]] = {}
    for file, lines in sources:
        for server in filter(None, map(_server, lines)):
            servers.setdefault(server.address, (file, server.down))
    server_files = tuple(dict.fromkeys(file for file, _ in sources)) or (path,)
    return UpstreamLayout(upstream, path, server_files, servers)
