"""HttpArtifactStore and download_command against a real HTTP server on 127.0.0.1 that requires credentials."""

from __future__ import annotations

import doctest
import hashlib
import io
import shlex
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

from graylift.adapters import artifacts
from graylift.adapters.artifacts import ArtifactAuth, HttpArtifactStore, download_command
from graylift.adapters.transport.deploy_dir import ShellDeployDir
from graylift.adapters.transport.local import LocalTransport
from graylift.core.layout import SHA_MARKER
from graylift.core.model import Host, Package, PackageKind
from graylift.errors import ArtifactError, RemoteCommandFailed
from graylift.testing import FolderTransport
from tests.adapters.transport.test_ssh_local import argv_holding
from tests.fakes.artifacts import FakeArtifactServer
from tests.fakes.base import Request, Response
from tests.fakes.trickle import Trickle

USER = "deploy"
PASSWORD = "p\"w \\$1 'x"  # a double quote, a backslash, a $, a space and a single quote
TOKEN = "tok-7f3a9c1e5b"
PACKAGE = b"pretend this is a tarball\n" * 1000
SHA = hashlib.sha256(PACKAGE).hexdigest()
TEMPLATE = "/{app}/{version}/{app}-{version}.{ext}"
PATH = "/pyapp/1.0.0/pyapp-1.0.0.tar.gz"


@dataclass
class Seen:
    method: str
    path: str
    authorized: bool
    argv_with_secret: list[str]  # processes whose argv held a secret while the server answered


@dataclass
class Repository(FakeArtifactServer):
    """The package and its .sha256; ``seen`` keeps each request, whether it was authorized, and which
    processes held a secret in their argv while it was answered."""

    seen: list[Seen] = field(default_factory=list)

    def handle(self, request: Request) -> Response:
        # the client (curl on a "host") is running now: is a secret in any process's argv?
        hits = [line for secret in (PASSWORD, TOKEN) for line in argv_holding(secret)]
        self.seen.append(Seen(request.method, request.path, self.authorized(request), hits))
        return super().handle(request)


def serve(scheme: str | None) -> Repository:
    repo = Repository(files={PATH: PACKAGE, PATH + ".sha256": f"{SHA}  pyapp-1.0.0.tar.gz\n".encode()},
                      scheme=scheme, username=USER, password=PASSWORD, token=TOKEN)
    repo.start()
    return repo


@pytest.fixture(params=["basic", "bearer"])
def repo(request: pytest.FixtureRequest) -> Iterator[Repository]:
    server = serve(request.param)
    yield server
    server.stop()


@pytest.fixture
def open_repo() -> Iterator[Repository]:
    server = serve(None)
    yield server
    server.stop()


def auth_for(repo: Repository) -> ArtifactAuth:
    return ArtifactAuth.basic(USER, PASSWORD) if repo.scheme == "basic" else ArtifactAuth.bearer(TOKEN)


def wrong_auth_for(repo: Repository) -> ArtifactAuth:
    return ArtifactAuth.basic(USER, "not-it-42") if repo.scheme == "basic" else ArtifactAuth.bearer("not-it-42")


def store(repo: Repository, auth: ArtifactAuth | None, **kwargs: Any) -> HttpArtifactStore:
    return HttpArtifactStore(url_template=repo.url + TEMPLATE, kind=PackageKind.TAR_GZ, auth=auth, timeout=5,
                             **kwargs)


def one_line(error: pytest.ExceptionInfo[ArtifactError]) -> str:
    message = str(error.value)
    assert "\n" not in message
    for secret in (PASSWORD, TOKEN, "not-it-42"):
        assert secret not in message
    return message


# ------------------------------------------------------------------------------------------ resolve


async def test_resolve_with_credentials(repo: Repository) -> None:
    package = await store(repo, auth_for(repo)).resolve("pyapp", "1.0.0")
    assert (package.sha256, package.url, package.filename) == (SHA, repo.url + PATH, "pyapp-1.0.0.tar.gz")
    assert [(s.method, s.path, s.authorized) for s in repo.seen] == [
        ("HEAD", PATH, True), ("GET", PATH + ".sha256", True)]


async def test_resolve_without_credentials_says_they_are_needed(repo: Repository) -> None:
    with pytest.raises(ArtifactError) as refused:
        await store(repo, None).resolve("pyapp", "1.0.0")
    assert one_line(refused) == (
        f"pyapp 1.0.0: the repository refused access ({repo.url}{PATH}): HTTP 401; it needs credentials: "
        "set username + password_env or token_env on the repository or the package")


async def test_resolve_with_wrong_credentials_says_to_check_them(repo: Repository) -> None:
    with pytest.raises(ArtifactError) as refused:
        await store(repo, wrong_auth_for(repo)).resolve("pyapp", "1.0.0")
    assert one_line(refused) == (
        f"pyapp 1.0.0: the repository refused access ({repo.url}{PATH}): HTTP 401; "
        f"check the {repo.scheme} credentials and the account's permissions")


async def test_a_version_the_repository_does_not_have(repo: Repository) -> None:
    with pytest.raises(ArtifactError) as missing:
        await store(repo, auth_for(repo)).resolve("pyapp", "9.9.9")
    assert one_line(missing) == (f"pyapp 9.9.9 is not in the repository ({repo.url}/pyapp/9.9.9/pyapp-9.9.9.tar.gz):"
                                 " HTTP 404; check the version")


async def test_a_missing_sha256_file(repo: Repository) -> None:
    del repo.files[PATH + ".sha256"]
    with pytest.raises(ArtifactError) as missing:
        await store(repo, auth_for(repo)).resolve("pyapp", "1.0.0")
    assert one_line(missing) == (f"pyapp 1.0.0: no sha256 at {repo.url}{PATH}.sha256 (HTTP 404); publish the "
                                 ".sha256 next to the package or set package.sha256")
    fixed = await store(repo, auth_for(repo), sha256="ab" * 32, sha256_url_template=None).resolve("pyapp", "1.0.0")
    assert fixed.sha256 == "ab" * 32


async def test_a_server_without_head_is_asked_with_get(repo: Repository) -> None:
    repo.head_allowed = False
    assert (await store(repo, auth_for(repo)).resolve("pyapp", "1.0.0")).sha256 == SHA
    assert [(s.method, s.authorized) for s in repo.seen] == [("HEAD", True), ("GET", True), ("GET", True)]


async def test_an_unreachable_repository() -> None:
    from graylift.lab.services import free_port

    url = f"http://127.0.0.1:{free_port()}"
    unreachable = HttpArtifactStore(url_template=url + TEMPLATE, kind=PackageKind.TAR_GZ, timeout=2,
                                    auth=ArtifactAuth.basic(USER, PASSWORD))
    with pytest.raises(ArtifactError) as caught:
        await unreachable.resolve("pyapp", "1.0.0")
    message = one_line(caught)
    assert message.startswith(f"pyapp 1.0.0: HEAD {PATH} failed: ConnectError")
    assert message.endswith(f"; is the artifact repository reachable at {url}{PATH}? check the URL and the network")



async def test_a_repository_that_never_finishes_its_answer_fails_at_the_time_limit() -> None:
    """Each request to the repository is bounded as a whole (httpx bounds each read): a server that keeps
    sending a header now and then ends the preflight with one line instead of holding it."""
    import asyncio

    async with Trickle() as slow:
        store = HttpArtifactStore(url_template=slow.url + TEMPLATE, kind=PackageKind.TAR_GZ, timeout=1)
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(ArtifactError) as caught:  # the guard ends the old behaviour's wait early
            await asyncio.wait_for(store.resolve("pyapp", "1.0.0"), 10)
        assert loop.time() - started < 5 and slow.requests == 1
    assert one_line(caught) == (f"pyapp 1.0.0: HEAD {PATH} failed: no complete answer in 2s; is the artifact "
                                f"repository reachable at {slow.url}{PATH}? check the URL and the network")

async def test_urls_in_messages_are_masked(open_repo: Repository) -> None:
    # the config refuses credentials in URLs; an error still never shows one
    url = open_repo.url.replace("http://", "http://someone:pw-in-url@")
    masked = HttpArtifactStore(url_template=url + TEMPLATE, kind=PackageKind.TAR_GZ, timeout=5)
    with pytest.raises(ArtifactError) as missing:
        await masked.resolve("pyapp", "9.9.9")
    message = one_line(missing)
    assert "pw-in-url" not in message and "someone" not in message
    assert message.startswith("pyapp 9.9.9 is not in the repository (http://***@127.0.0.1:")


# ------------------------------------------------------------------------------------------ download


async def test_download_command_with_stdin_fetches_the_file(repo: Repository, tmp_path: Path) -> None:
    dest = tmp_path / "my dir" / "pyapp 1.0.0.tar.gz"  # a space: the destination must be quoted
    dest.parent.mkdir()
    command, stdin = download_command(repo.url + PATH, str(dest), auth_for(repo))
    assert PASSWORD not in command and TOKEN not in command and stdin is not None
    transport = LocalTransport(Host("controller", "127.0.0.1"))

    # without the credentials on stdin curl is refused, and says so without any secret
    with pytest.raises(RemoteCommandFailed) as refused:
        await transport.run(command, timeout=30)
    assert refused.value.exit_status == 22 and "401" in str(refused.value)
    assert not dest.exists()

    await transport.run(command, timeout=30, stdin=stdin)
    assert dest.read_bytes() == PACKAGE
    downloads = [s for s in repo.seen if s.path == PATH]
    assert [s.authorized for s in downloads] == [False, True]
    assert [s.argv_with_secret for s in downloads] == [[], []]  # curl ran with no secret in its argv


async def test_download_command_with_wrong_credentials_fails(repo: Repository, tmp_path: Path) -> None:
    command, stdin = download_command(repo.url + PATH, str(tmp_path / "p.tar.gz"), wrong_auth_for(repo))
    result = await LocalTransport(Host("controller", "127.0.0.1")).run(command, timeout=30, stdin=stdin,
                                                                        check=False)
    assert result.exit_status == 22 and "401" in result.stderr and "not-it-42" not in result.stderr


async def test_download_command_without_credentials_uses_curl_or_wget(open_repo: Repository,
                                                                      tmp_path: Path) -> None:
    transport = LocalTransport(Host("controller", "127.0.0.1"))
    only_wget = tmp_path / "bin"
    only_wget.mkdir()
    (only_wget / "wget").symlink_to("/usr/bin/wget")
    for name, path_prefix in (("curl", ""), ("wget", f"PATH={shlex.quote(str(only_wget))}; ")):
        dest = tmp_path / f"{name}.tar.gz"
        command, stdin = download_command(open_repo.url + PATH, str(dest), None)
        assert stdin is None
        await transport.run(path_prefix + command, timeout=30)
        assert dest.read_bytes() == PACKAGE, name
    with pytest.raises(RemoteCommandFailed, match="exit 8"):  # wget: the server answered 404
        await transport.run(f"PATH={shlex.quote(str(only_wget))}; " + download_command(
            open_repo.url + "/nope.tar.gz", str(tmp_path / "nope"), None)[0], timeout=30)


async def test_download_with_credentials_needs_curl(repo: Repository, tmp_path: Path) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    command, stdin = download_command(repo.url + PATH, str(tmp_path / "p.tar.gz"), auth_for(repo))
    result = await LocalTransport(Host("controller", "127.0.0.1")).run(
        f"PATH={shlex.quote(str(empty))}; " + command, timeout=30, stdin=stdin, check=False)
    assert result.exit_status == 127 and "curl is needed on the host" in result.stderr
    assert repo.seen == []


# ------------------------------------------------------------------------------------------ pure parts

DOWNLOAD_CASES = [
    # (id, url, dest, auth, command, stdin)
    ("no-auth", "http://repo/a.tar.gz", "/srv/a/x.tar.gz", None,
     "if command -v curl >/dev/null; then curl -fsSL --retry 2 -o /srv/a/x.tar.gz http://repo/a.tar.gz; "
     "else wget -q -O /srv/a/x.tar.gz http://repo/a.tar.gz; fi", None),
    ("no-auth-quoted", "http://repo/a b?x=1&y=$(id)", "/srv/my app/'x'", None,
     "if command -v curl >/dev/null; then curl -fsSL --retry 2 -o '/srv/my app/'\"'\"'x'\"'\"'' "
     "'http://repo/a b?x=1&y=$(id)'; else wget -q -O '/srv/my app/'\"'\"'x'\"'\"'' 'http://repo/a b?x=1&y=$(id)'; fi",
     None),
    ("basic", "https://repo/a.jar", "/tmp/a.jar", ArtifactAuth.basic("deploy", 's3"cr\\et'),
     "command -v curl >/dev/null || { echo 'curl is needed on the host to download with credentials' >&2; exit 127; }; "
     "curl -fsSL --retry 2 --config - -o /tmp/a.jar https://repo/a.jar", 'user = "deploy:s3\\"cr\\\\et"\n'),
    ("bearer", "https://repo/a.jar", "/tmp/a.jar", ArtifactAuth.bearer("t0k$en"),
     "command -v curl >/dev/null || { echo 'curl is needed on the host to download with credentials' >&2; exit 127; }; "
     "curl -fsSL --retry 2 --config - -o /tmp/a.jar https://repo/a.jar", 'header = "Authorization: Bearer t0k$en"\n'),
]


@pytest.mark.parametrize(("url", "dest", "auth", "command", "stdin"), [c[1:] for c in DOWNLOAD_CASES],
                         ids=[c[0] for c in DOWNLOAD_CASES])
def test_download_command(url: str, dest: str, auth: ArtifactAuth | None, command: str, stdin: str | None) -> None:
    assert download_command(url, dest, auth) == (command, stdin)


def test_auth_never_shows_its_secret() -> None:
    basic, bearer = ArtifactAuth.basic("deploy", "hunter2"), ArtifactAuth.bearer("tok-123")
    for auth, secret in ((basic, "hunter2"), (bearer, "tok-123")):
        for shown in (repr(auth), str(auth), f"{auth}", f"{auth!r}", repr([auth]), repr({"auth": auth})):
            assert secret not in shown
        assert auth.secrets == (secret,)
    assert repr(basic) == "ArtifactAuth(basic, username='deploy', password=***)"
    assert repr(bearer) == "ArtifactAuth(bearer, token=***)"
    assert (basic.scheme, bearer.scheme) == ("basic", "bearer")


@pytest.mark.parametrize(("kwargs", "message"), [
    ({}, "username \\+ password or a token, exactly one"),
    ({"username": "u", "password": "hunter2", "token": "hunter2"}, "exactly one"),
    ({"username": "u"}, "non-empty username and password"),
    ({"password": "hunter2"}, "non-empty username and password"),
    ({"token": ""}, "empty"),
    ({"username": "u:x", "password": "hunter2"}, "cannot contain ':'"),
    ({"username": "u", "password": "hunter2\nheader = x"}, "password contains a line break"),
    ({"token": "hunter2\r"}, "token contains a line break"),
])
def test_auth_refuses_what_it_cannot_carry(kwargs: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message) as refused:
        ArtifactAuth(**kwargs)
    assert "hunter2" not in str(refused.value)


def test_docstring_examples() -> None:
    result = doctest.testmod(artifacts)
    assert result.attempted >= 3 and result.failed == 0


# ------------------------------------------------------------------------------------------ staging


def tarball(version: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo("VERSION")
        info.size = len(version)
        tar.addfile(info, io.BytesIO(version.encode()))
    return buf.getvalue()


async def test_staging_from_the_repository_is_one_command_on_the_host(tmp_path: Path) -> None:
    """A fresh partial dir, the download (credentials on stdin), the sha256 check and the unpack: one command.
    A refused download still fails as the download: its command, curl's exit and words, nothing left behind."""
    data = tarball("2.0")
    server = Repository(files={"/app/app-2.0.tar.gz": data}, scheme="bearer", token=TOKEN)
    server.start()
    try:
        root = tmp_path / "host"
        (root / "releases").mkdir(parents=True)
        host = FolderTransport(Host("web-1", "10.0.0.1"), root, "/srv/app")
        deploy = ShellDeployDir(host, "/srv/app")
        pkg = Package("app", "2.0", PackageKind.TAR_GZ, "app-2.0.tar.gz", hashlib.sha256(data).hexdigest(),
                      url=server.url + "/app/app-2.0.tar.gz")

        await deploy.stage(pkg, "2.0", version="2.0", auth=ArtifactAuth.bearer(TOKEN), replace=False, timeout=30)
        assert len(host.commands) == 1 and TOKEN not in host.commands[0]
        assert (root / "releases" / "2.0" / "VERSION").read_text() == "2.0"
        assert (root / "releases" / "2.0" / SHA_MARKER).read_text().strip() == pkg.sha256

        with pytest.raises(RemoteCommandFailed) as refused:
            await deploy.stage(pkg, "2.0b", version="2.0", auth=ArtifactAuth.bearer("not-it-42"), replace=False,
                               timeout=30)
        assert refused.value.exit_status == 22 and "401" in str(refused.value)
        assert refused.value.command.endswith("-o /srv/app/releases/.2.0b.partial/app-2.0.tar.gz "
                                              f"{server.url}/app/app-2.0.tar.gz")
        assert "not-it-42" not in str(refused.value) and "graylift:" not in str(refused.value)
        assert sorted(p.name for p in (root / "releases").iterdir()) == ["2.0"]

        with pytest.raises(ArtifactError, match=r"sha256 of app-2\.0\.tar\.gz does not match"):
            await deploy.stage(replace(pkg, sha256="0" * 64), "2.0c", version="2.0",
                               auth=ArtifactAuth.bearer(TOKEN), replace=False, timeout=30)
        assert sorted(p.name for p in (root / "releases").iterdir()) == ["2.0"]
    finally:
        server.stop()
