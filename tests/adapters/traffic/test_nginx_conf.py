"""The pure nginx config parsers (graylift.adapters.traffic.nginx_conf), from tables of config text."""

from __future__ import annotations

import doctest

import pytest

from graylift.adapters.traffic import nginx_conf
from graylift.adapters.traffic.nginx_conf import ServerLine, find_layout, find_server, parse_dump, toggle_down

MAIN = "/etc/nginx/nginx.conf"


def dump(files: dict[str, str]) -> str:
    """What ``nginx -T`` prints: each file after its header, followed by one newline."""
    return "".join(f"# configuration file {path}:\n{text}\n" for path, text in files.items())


def test_module_doctest() -> None:
    assert doctest.testmod(nginx_conf).failed == 0


@pytest.mark.parametrize("files", [
    {MAIN: "events {}\nhttp {}\n"},
    {MAIN: "http {\n    include up/*.conf;\n}\n", "/etc/nginx/up/a.conf": "upstream a {\n}\n",
     "/etc/nginx/up/b.conf": "server 1.1.1.1:80;"},  # the last file without a final newline
    {MAIN: "a\n\n\nb\n", "/x.conf": "\n"},  # blank lines kept exactly
])
def test_parse_dump_gives_back_each_file_exactly(files: dict[str, str]) -> None:
    assert parse_dump(dump(files)) == files
    assert list(parse_dump(dump(files))) == list(files)  # the main config first


BLOCK = ("upstream shop {\n    server 10.0.0.11:8080 max_fails=3;\n    server 10.0.0.12:8080 down;\n"
         "    keepalive 8;\n}\n")
BARE = "server 10.0.0.11:8080;\nserver 10.0.0.12:8080 weight=2 down;  # drained\n"

# name, files, upstream file, server files, {address: (file, down)}
LAYOUTS = [
    ("block in an include (a)",
     {MAIN: "http {\n    include /etc/nginx/up/*.conf;\n}\n", "/etc/nginx/up/shop.conf": BLOCK},
     "/etc/nginx/up/shop.conf", ("/etc/nginx/up/shop.conf",),
     {"10.0.0.11:8080": ("/etc/nginx/up/shop.conf", False), "10.0.0.12:8080": ("/etc/nginx/up/shop.conf", True)}),
    ("block in nginx.conf itself",
     {MAIN: "http {\n" + BLOCK + "}\n"}, MAIN, (MAIN,),
     {"10.0.0.11:8080": (MAIN, False), "10.0.0.12:8080": (MAIN, True)}),
    ("include inside upstream, relative path (b)",
     {MAIN: "http {\n  upstream shop {\n    include upstreams/shop.conf;  # servers\n    keepalive 16;\n  }\n}\n",
      "/etc/nginx/upstreams/shop.conf": BARE},
     MAIN, ("/etc/nginx/upstreams/shop.conf",),
     {"10.0.0.11:8080": ("/etc/nginx/upstreams/shop.conf", False),
      "10.0.0.12:8080": ("/etc/nginx/upstreams/shop.conf", True)}),
    ("include inside upstream, quoted glob over two files",
     {MAIN: 'upstream shop {\n    include "/srv/lb/shop-*.conf";\n}\n',
      "/srv/lb/shop-a.conf": "server 10.0.0.11:8080;\n", "/srv/lb/shop-b.conf": "server 10.0.0.12:8080 down;\n",
      "/srv/lb/other.conf": "server 10.0.0.99:8080;\n"},
     MAIN, ("/srv/lb/shop-a.conf", "/srv/lb/shop-b.conf"),
     {"10.0.0.11:8080": ("/srv/lb/shop-a.conf", False), "10.0.0.12:8080": ("/srv/lb/shop-b.conf", True)}),
    ("servers both in the block and in an include",
     {MAIN: "upstream shop {\n    server 10.0.0.10:8080;\n    include more.conf;\n}\n",
      "/etc/nginx/more.conf": "server 10.0.0.11:8080;\n"},
     MAIN, (MAIN, "/etc/nginx/more.conf"),
     {"10.0.0.10:8080": (MAIN, False), "10.0.0.11:8080": ("/etc/nginx/more.conf", False)}),
    ("another upstream's servers are not ours",
     {MAIN: "upstream other {\n    server 10.0.0.11:8080;\n}\nupstream shop {\n    server 10.0.0.12:8080;\n}\n"},
     MAIN, (MAIN,), {"10.0.0.12:8080": (MAIN, False)}),
]


@pytest.mark.parametrize(("name", "files", "upstream_file", "server_files", "servers"), LAYOUTS,
                         ids=[row[0] for row in LAYOUTS])
def test_find_layout(name: str, files: dict[str, str], upstream_file: str, server_files: tuple[str, ...],
                     servers: dict[str, tuple[str, bool]]) -> None:
    layout = find_layout(parse_dump(dump(files)), "shop")
    assert (layout.upstream_file, layout.server_files, dict(layout.servers)) == (upstream_file, server_files,
                                                                                 servers)
    assert layout.inside == (server_files != (upstream_file,))
    for path in server_files:  # find_server on the file's own text finds the same lines
        for address, (file, down) in servers.items():
            if file == path:
                line = find_server(files[path], layout.block_in(path), [address])
                assert line is not None and (line.address, line.down) == (address, down)


def test_find_layout_without_the_upstream_says_so() -> None:
    with pytest.raises(ValueError, match=r"no 'upstream shop \{' block in the 2 file\(s\) nginx loads"):
        find_layout({MAIN: "http {}\n", "/x.conf": "upstream other {\n}\n"}, "shop")


def test_describe_names_the_layout() -> None:
    a = find_layout(LAYOUTS[0][1], "shop")
    assert a.describe() == "upstream shop with its servers in /etc/nginx/up/shop.conf (whole block in one file)"
    b = find_layout(LAYOUTS[2][1], "shop")
    assert b.describe() == ("upstream shop in /etc/nginx/nginx.conf, servers in /etc/nginx/upstreams/shop.conf "
                            "(include inside upstream)")


@pytest.mark.parametrize(("text", "upstream", "addresses", "expected"), [
    (BLOCK, "shop", ["10.0.0.11:8080"], ServerLine(1, "10.0.0.11:8080", False)),
    (BLOCK, "shop", ["web-2:8080", "10.0.0.12:8080"], ServerLine(2, "10.0.0.12:8080", True)),
    (BLOCK, "shop", ["10.0.0.13:8080"], None),
    (BARE, None, ["10.0.0.12:8080"], ServerLine(1, "10.0.0.12:8080", True)),
    ("upstream other {\n    server 10.0.0.11:8080;\n}\n" + BLOCK, "shop", ["10.0.0.11:8080"],
     ServerLine(4, "10.0.0.11:8080", False)),
])
def test_find_server(text: str, upstream: str | None, addresses: list[str], expected: ServerLine | None) -> None:
    assert find_server(text, upstream, addresses) == expected


def test_find_server_without_the_block_raises() -> None:
    with pytest.raises(ValueError, match=r"no 'upstream web \{' line"):
        find_server(BLOCK, "web", ["10.0.0.11:8080"])


@pytest.mark.parametrize(("line", "down", "expected"), [
    ("    server 10.0.0.11:8080 max_fails=3;\n", True, "    server 10.0.0.11:8080 max_fails=3 down;\n"),
    ("server 10.0.0.12:8080 weight=2 down;  # drained\n", False, "server 10.0.0.12:8080 weight=2;  # drained\n"),
    ("\tserver 10.0.0.12:8080;\r\n", True, "\tserver 10.0.0.12:8080 down;\r\n"),
])
def test_toggle_down_changes_only_the_flag(line: str, down: bool, expected: str) -> None:
    text = "# before\n" + line + "# after\n"
    found = find_server(text, None, [line.split()[1].rstrip(";")])
    assert found is not None
    assert toggle_down(text, found, down) == "# before\n" + expected + "# after\n"
