"""The deploy dir's reads on a real folder through a real shell (graylift.adapters.transport.deploy_dir).

The survey runs on every host twice per release (preflight, pre-check), the release-dir read once: each is one
command whose cost on the host should not grow with the number of release dirs. Markers are read with the
shell's own ``read``, so a marker that is not one line of a sha256 is never half-taken.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import os
import stat
import tarfile
from pathlib import Path

import pytest

from graylift.adapters.transport.deploy_dir import ShellDeployDir
from graylift.core.layout import SHA_MARKER, VERSION_MARKER
from graylift.core.model import Host, Package, PackageKind
from graylift.errors import ArtifactError
from graylift.testing import FolderTransport

DEPLOY = "/srv/app"
SHA_A, SHA_B = "a" * 64, "b" * 64
WATCHED = ("readlink", "head", "basename", "stat", "cat", "ls")


@pytest.fixture
def programs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """PATH starts with wrappers of the usual file programs that log each run to ``ran.log``."""
    bin_dir, log = tmp_path / "bin", tmp_path / "ran.log"
    bin_dir.mkdir()
    log.touch()
    for name in WATCHED:
        real = next((Path(d) / name for d in os.environ["PATH"].split(":") if (Path(d) / name).is_file()), None)
        assert real is not None, name
        wrapper = bin_dir / name
        wrapper.write_text(f'#!/bin/sh\necho {name} >> {log}\nexec {real} "$@"\n')
        wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    return log


def _deploy_dir(root: Path) -> ShellDeployDir:
    return ShellDeployDir(FolderTransport(Host("web-1", "10.0.0.1"), root, DEPLOY), DEPLOY)


def _release(root: Path, name: str, sha: str | None = None, version: str | None = None) -> None:
    d = root / "releases" / name
    d.mkdir(parents=True)
    if sha is not None:
        (d / SHA_MARKER).write_text(sha)
    if version is not None:
        (d / VERSION_MARKER).write_text(version)


def test_a_survey_runs_two_programs_however_many_release_dirs_and_lists_them_newest_first(
        tmp_path: Path, programs: Path) -> None:
    root = tmp_path / "host"
    for n in range(8):
        _release(root, f"1.0.{n}", SHA_A + "\n", f"1.0.{n}\n")
        age = (n * 5) % 8  # staged in another order than their names: 1.0.0 newest, then 1.0.5, 1.0.2, ...
        os.utime(root / "releases" / f"1.0.{n}", (1_700_000_000 - age * 60,) * 2)
    (root / "releases" / ".1.0.9.partial").mkdir()  # a download under way is no release dir
    (root / "current").symlink_to("releases/1.0.7")
    found = asyncio.run(_deploy_dir(root).survey())
    assert (found.current_dir, found.sha256, len(found.releases)) == ("1.0.7", SHA_A, 8)
    assert found.newest_first == ("1.0.0", "1.0.5", "1.0.2", "1.0.7", "1.0.4", "1.0.1", "1.0.6", "1.0.3")
    assert found.release_dirs("1.0.4") == asyncio.run(_deploy_dir(root).release("1.0.4"))  # what a read says
    assert sorted(programs.read_text().split()) == ["ls", "ls", "readlink", "readlink"]  # none per release dir


def test_the_release_dir_read_runs_no_program_for_the_marker(tmp_path: Path, programs: Path) -> None:
    root = tmp_path / "host"
    _release(root, "2.0.0", SHA_B + "\n")
    _release(root, "1.0.0", SHA_A + "\n")
    (root / "current").symlink_to("releases/1.0.0")
    dirs = asyncio.run(_deploy_dir(root).release("2.0.0"))
    assert (dirs.present, dirs.sha256, dirs.current, sorted(dirs.listing)) == (True, SHA_B, "1.0.0",
                                                                             ["1.0.0", "2.0.0"])
    assert sorted(programs.read_text().split()) == ["ls", "readlink"]


@pytest.mark.parametrize(("marker", "taken"), [
    (SHA_A + "\n", SHA_A),
    (SHA_A, SHA_A),  # no newline at the end (another writer)
    (SHA_A + "ff\n", None),  # longer than a sha256: not cut down to one
    ("abc\n" + SHA_A + "\n", None),  # two lines: the first is the marker
    ("", None),
])
def test_a_marker_is_one_whole_line(tmp_path: Path, marker: str, taken: str | None) -> None:
    root = tmp_path / "host"
    _release(root, "1.0.0", marker, "1.0.0\n")
    _release(root, "0.9.0")
    (root / "current").symlink_to("releases/1.0.0")
    found = asyncio.run(_deploy_dir(root).survey())
    assert found.releases == {"1.0.0": taken, "0.9.0": None}  # every release dir is listed, whatever its marker
    assert asyncio.run(_deploy_dir(root).release("1.0.0")).sha256 == taken


def test_an_unreadable_marker_reads_as_none_and_says_nothing(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        marker_dir = tmp_path / "host" / "releases" / "1.0.0"
        _release(tmp_path / "host", "1.0.0")
        (marker_dir / SHA_MARKER).mkdir()  # root reads any file: a directory in its place cannot be read
    else:
        _release(tmp_path / "host", "1.0.0", SHA_A + "\n")
        (tmp_path / "host" / "releases" / "1.0.0" / SHA_MARKER).chmod(0)
    (tmp_path / "host" / "current").symlink_to("releases/1.0.0")
    transport = FolderTransport(Host("web-1", "10.0.0.1"), tmp_path / "host", DEPLOY)
    found = asyncio.run(ShellDeployDir(transport, DEPLOY).survey())
    assert (found.current_dir, found.releases) == ("1.0.0", {"1.0.0": None})
    from graylift.core.layout import survey_script

    result = asyncio.run(transport.run(survey_script(DEPLOY), timeout=10))
    assert result.stderr == ""


def test_fresh_other_and_dangling_layouts(tmp_path: Path) -> None:
    from graylift.core.layout import LayoutError

    root = tmp_path / "host"
    _release(root, "1.0.0", SHA_A + "\n")
    assert asyncio.run(_deploy_dir(root).survey()).fresh
    (root / "current").mkdir()
    with pytest.raises(LayoutError, match="current is a directory, not a symlink"):
        asyncio.run(_deploy_dir(root).survey())
    (root / "current").rmdir()
    (root / "current").symlink_to("releases/2.0.0")
    with pytest.raises(LayoutError, match="does not exist"):
        asyncio.run(_deploy_dir(root).survey())


def test_the_release_dir_read_says_the_free_space_when_the_dir_is_to_be_staged(tmp_path: Path) -> None:
    """Pre-staging checks the disk before it downloads: the same read tells it, no second command."""
    root = tmp_path / "host"
    root.mkdir()
    dirs = asyncio.run(_deploy_dir(root).release("1.0.0"))  # not even releases/ yet: its nearest parent's
    vfs = os.statvfs(root)
    assert dirs.present is False and dirs.free_bytes is not None
    assert abs(dirs.free_bytes - vfs.f_bavail * vfs.f_frsize) < 64 * 2**20  # the same disk, give or take writes
    _release(root, "1.0.0", SHA_A + "\n")
    assert asyncio.run(_deploy_dir(root).release("1.0.0")).free_bytes is None  # there: nothing to stage


def _tarball(tmp_path: Path, version: str) -> Package:
    src = tmp_path / f"src-{version}"
    src.mkdir()
    (src / "app.py").write_text(f"print({version!r})\n")
    path = tmp_path / f"app-{version}.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        tar.add(src / "app.py", arcname="app.py")
    data = path.read_bytes()
    return Package("app", version, PackageKind.TAR_GZ, path.name, hashlib.sha256(data).hexdigest(),
                   url=f"file://{path}", size=len(data))


@pytest.mark.parametrize("by_url", [True, False], ids=["url", "upload"])
def test_stage_if_needed_looks_and_stages_in_the_commands_of_a_stage_alone(tmp_path: Path, by_url: bool) -> None:
    """Pre-staging a package the repository serves to every host: the look (there already? room for it?) goes
    with the download in ONE host command (from a URL; an upload needs its own copy), and nothing is fetched for
    a dir that is there or a disk without room."""
    root = tmp_path / "host"
    root.mkdir()
    pkg = _tarball(tmp_path, "2.0.0")
    if not by_url:
        pkg = dataclasses.replace(pkg, url=None, local_path=str(tmp_path / pkg.filename))
    ddir = _deploy_dir(root)
    assert isinstance(ddir.transport, FolderTransport)
    no_room = asyncio.run(ddir.stage_if_needed(pkg, "2.0.0", version="2.0.0", auth=None, min_free=2**62, timeout=30))
    assert no_room is not None and no_room.present is False and no_room.free_bytes is not None
    assert no_room.free_bytes < 2**62 and not (root / "releases" / "2.0.0").exists()
    assert not list((root / "releases").glob(".*.partial")) if (root / "releases").exists() else True
    ddir.transport.commands.clear()
    staged = asyncio.run(ddir.stage_if_needed(pkg, "2.0.0", version="2.0.0", auth=None, min_free=1, timeout=30))
    assert staged is None
    assert (root / "releases" / "2.0.0" / "app.py").read_text() == "print('2.0.0')\n"
    assert (root / "releases" / "2.0.0" / SHA_MARKER).read_text().strip() == pkg.sha256
    assert len(ddir.transport.commands) == (1 if by_url else 2), ddir.transport.commands
    ddir.transport.commands.clear()
    there = asyncio.run(ddir.stage_if_needed(pkg, "2.0.0", version="2.0.0", auth=None, min_free=1, timeout=30))
    assert there is not None and there.present and there.sha256 == pkg.sha256
    assert len(ddir.transport.commands) == 1


def test_stage_if_needed_maps_a_bad_download_as_the_stage_does(tmp_path: Path) -> None:
    root = tmp_path / "host"
    root.mkdir()
    pkg = dataclasses.replace(_tarball(tmp_path, "2.0.0"), sha256="c" * 64)
    with pytest.raises(ArtifactError, match=r"sha256 of app-2\.0\.0\.tar\.gz does not match"):
        asyncio.run(_deploy_dir(root).stage_if_needed(pkg, "2.0.0", version="2.0.0", auth=None, min_free=1,
                                                      timeout=30))
    assert not (root / "releases" / "2.0.0").exists() and not list((root / "releases").glob(".*"))
