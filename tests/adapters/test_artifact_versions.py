"""Versions listed by an HTTP repository (`versions_url`): the page shapes of Maven, Nexus, Artifactory and
directory indexes, read from a real `python -m http.server` (the lab's artifact server) over loopback."""

from __future__ import annotations

import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from graylift.adapters.artifact_versions import list_versions, natural_key, parse_listing
from graylift.config import load_config
from graylift.errors import ArtifactError, ConfigError
from graylift.lab import services
from graylift.lab.artifacts import start_artifact_server
from tests.fakes.trickle import trickle_in_a_thread

MAVEN = """<?xml version="1.0" encoding="UTF-8"?>
<metadata><groupId>com.example</groupId><artifactId>shop</artifactId>
  <versioning><latest>1.10.0</latest><release>1.10.0</release>
    <versions><version>1.9.2</version><version>1.10.0</version><version>1.2.0</version></versions>
  </versioning></metadata>"""
NEXUS = '{"items": [{"name": "shop", "version": "2.0.0"}, {"name": "shop", "version": "2.1.0-rc1"}], ' \
        '"continuationToken": null}'
ARTIFACTORY = '{"repo": "libs", "path": "/shop", "children": [{"uri": "/3.0.0", "folder": true}, ' \
              '{"uri": "/3.0.1", "folder": true}, {"uri": "/maven-metadata.xml", "folder": false}]}'
NGINX_AUTOINDEX = """<html><head><title>Index of /pyapp/</title></head><body><h1>Index of /pyapp/</h1><hr><pre>
<a href="../">../</a>
<a href="pyapp-1.0.0.tar.gz">pyapp-1.0.0.tar.gz</a>     02-Dec-2026 05:00   1024
<a href="pyapp-1.0.0.tar.gz.sha256">pyapp-1.0.0.tar.gz.sha256</a>
<a href="pyapp-2.0.0.tar.gz">pyapp-2.0.0.tar.gz</a>
<a href="other-9.9.9.tar.gz">other-9.9.9.tar.gz</a>
<a href="pyapp-$(reboot).tar.gz">evil</a>
</pre><hr></body></html>"""


@pytest.mark.parametrize(("body", "content_type", "app", "ext", "expected"), [
    (MAVEN, "application/xml", "shop", "war", ["1.10.0", "1.9.2", "1.2.0"]),
    (NEXUS, "application/json", "shop", "war", ["2.1.0-rc1", "2.0.0"]),
    (ARTIFACTORY, "application/json", "shop", "war", ["3.0.1", "3.0.0"]),
    ('["1.0", "1.1", "bad name"]', "text/plain", "x", "jar", ["1.1", "1.0"]),
    (NGINX_AUTOINDEX, "text/html", "pyapp", "tar.gz", ["2.0.0", "1.0.0"]),
    ("<?xml version='1.0'?><metadata><broken>", "application/xml", "shop", "war", []),
    ("{not json", "application/json", "shop", "war", []),
    ("<html>nothing here</html>", "text/html", "shop", "war", []),
])
def test_listing_pages_are_read_by_their_shape(body: str, content_type: str, app: str, ext: str,
                                               expected: list[str]) -> None:
    assert parse_listing(body, content_type, app, ext) == expected


def test_versions_order_naturally() -> None:
    assert sorted(["1.9.2", "1.10.0", "1.2", "2.0"], key=natural_key) == ["1.2", "1.9.2", "1.10.0", "2.0"]


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """The lab's artifact server (`python -m http.server`) over a repository tree on loopback."""
    root = tmp_path_factory.mktemp("repo")
    files = root / "files"
    for version in ("1.0.0", "1.9.2", "1.10.0"):
        (files / "pyapp" / version).mkdir(parents=True)
        (files / "pyapp" / version / f"pyapp-{version}.tar.gz").write_bytes(b"x")
    (files / "shop").mkdir()
    (files / "shop" / "maven-metadata.xml").write_text(MAVEN)
    port = services.free_port()
    pidfile = start_artifact_server(root / "server", files, "127.0.0.1", port)
    yield f"http://127.0.0.1:{port}", root
    services.stop_pidfile(pidfile)


def test_a_directory_index_and_maven_metadata_over_http(repository: tuple[str, Path]) -> None:
    base, _ = repository
    assert list_versions(f"{base}/pyapp/", "pyapp", "tar.gz", None) == ["1.10.0", "1.9.2", "1.0.0"]
    assert list_versions(f"{base}/shop/maven-metadata.xml", "shop", "war", None) == ["1.10.0", "1.9.2", "1.2.0"]
    with pytest.raises(ArtifactError, match=r"listing versions of nope: http://127.0.0.1:\d+/nope/ answered HTTP 404"):
        list_versions(f"{base}/nope/", "nope", "war", None)
    dead = f"http://127.0.0.1:{services.free_port()}/x/"
    with pytest.raises(ArtifactError, match="unreachable"):
        list_versions(dead, "x", "war", None)



def test_a_listing_page_that_never_finishes_is_given_up_at_the_timeout() -> None:
    """The console's "new release" page asks for the list from a worker thread: a repository (or a proxy)
    sending a header line now and then held that thread, and the page, without end."""
    with trickle_in_a_thread() as slow:
        started = time.monotonic()
        with pytest.raises(ArtifactError) as caught:
            list_versions(slow.url + "/pyapp/", "pyapp", "tar.gz", None, timeout=1)
        assert time.monotonic() - started < 5
    assert str(caught.value) == f"listing versions of pyapp: {slow.url}/pyapp/ gave no complete answer in 2s"

def config_text(base: str, package: str) -> str:
    return textwrap.dedent(f"""\
        repositories:
          repo: {{url: "{base}/{{app}}/{{version}}/{{app}}-{{version}}.{{ext}}", sha256_url: "{{url}}.sha256",
                  versions_url: "{base}/{{app}}/"}}
        apps:
          pyapp:
            package: {package}
            deploy: {{dir: /srv/pyapp}}
            commands: {{start: "bin/start", stop: "bin/stop"}}
            health: {{none: true}}
        """)


def test_the_console_lists_what_the_repository_has(repository: tuple[str, Path], tmp_path: Path) -> None:
    from graylift.service import Graylift
    from graylift.service.catalog import listed_versions

    base, _ = repository
    path = tmp_path / "graylift.yaml"
    path.write_text(config_text(base, "{type: tar.gz, repository: repo}") + f"state: sqlite:///{tmp_path}/s.db\n")
    gl = Graylift(path)
    try:
        assert listed_versions(gl, "pyapp", "prod") == ["1.10.0", "1.9.2", "1.0.0"]
        assert listed_versions(gl, "pyapp", "prod", limit=1) == ["1.10.0"]
    finally:
        gl.close()


def test_versions_url_needs_a_url_repository(tmp_path: Path) -> None:
    path = tmp_path / "graylift.yaml"
    package = "{type: tar.gz, local_dir: /tmp, versions_url: 'http://x/{app}/'}"
    path.write_text(config_text("http://127.0.0.1:1", package))
    with pytest.raises(ConfigError, match="versions_url needs url"):
        load_config(path)
