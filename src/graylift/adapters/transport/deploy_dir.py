"""The app's deploy dir on a host, through its shell: ``releases/<dir>`` side by side and the ``current`` link.

Every operation is one shell command, its arguments quoted, safe to repeat. Staging downloads into
``releases/.<dir>.partial`` (credentials on curl's stdin, never its argv), verifies the sha256, refuses archives
with absolute or ``..`` members, writes the sha256 and version markers, and renames the dir into place only
then; a half-download is never used. ``switch`` renames a new symlink over ``current`` (atomic).
"""

from __future__ import annotations

import shlex
from pathlib import Path

from graylift.adapters.artifacts import ArtifactAuth, download_command
from graylift.core.layout import (
    SHA_MARKER,
    VERSION_MARKER,
    Found,
    LayoutError,
    ReleaseDirs,
    parse_release_dirs,
    parse_survey,
    release_dir_of_link,
    release_dirs_script,
    release_link_prefixes,
    stage_guard_script,
    survey_script,
)
from graylift.core.model import Package, PackageKind, is_plain_name
from graylift.errors import ArtifactError, RemoteCommandFailed
from graylift.ports import Transport

SHA_MISMATCH_EXIT = 3
UNSAFE_ARCHIVE_EXIT = 4
DOWNLOAD_EXIT = 5
DOWNLOAD_MARK = "graylift: the download exited "
QUICK = 30.0
q = shlex.quote


class ShellDeployDir:
    def __init__(self, transport: Transport, deploy_dir: str) -> None:
        self.transport, self.root = transport, deploy_dir.rstrip("/")
        self.host = transport.host.name

    async def _sh(self, script: str, *, timeout: float = QUICK, check: bool = True, stdin: str | None = None) -> str:
        result = await self.transport.run(script, timeout=timeout, check=check, stdin=stdin)  # a shell runs it
        return result.stdout.strip()

    async def survey(self) -> Found:
        return read_survey(await self._sh(survey_script(self.root)), self.root, self.host)

    async def current(self) -> str | None:
        out = await self._sh(f"readlink {q(self.root)}/current || true")
        return release_dir_of_link(out, self.root) if out else None

    async def release(self, name: str) -> ReleaseDirs:
        return parse_release_dirs(await self._sh(release_dirs_script(self.root, name)), self.root)

    async def stage(self, pkg: Package, name: str, *, version: str, auth: ArtifactAuth | None, replace: bool,
                    timeout: float) -> None:
        """Download (or upload), verify, unpack and rename into place. From a URL that is ONE command on the
        host (a fresh partial dir, the download, the check, the unpack): three round trips before."""
        await self._stage(pkg, name, version=version, auth=auth, replace=replace, timeout=timeout)

    async def stage_if_needed(self, pkg: Package, name: str, *, version: str, auth: ArtifactAuth | None,
                              min_free: int, timeout: float) -> ReleaseDirs | None:
        """:meth:`stage` unless ``releases/<name>`` is there or fewer than ``min_free`` bytes are free where it
        would go, looked at in the stage's own first command (:func:`stage_guard_script`): None when it staged,
        else what it found (``present``, or absent with ``free_bytes``), with nothing fetched."""
        guard = stage_guard_script(self.root, name, min_free)
        out = await self._stage(pkg, name, version=version, auth=auth, replace=False, timeout=timeout, guard=guard)
        if out.startswith(("present", "absent")):
            return parse_release_dirs(out, self.root)
        return None

    async def _stage(self, pkg: Package, name: str, *, version: str, auth: ArtifactAuth | None, replace: bool,
                     timeout: float, guard: str = "") -> str:
        """The stage; ``guard`` goes first in its first command, and what that command printed when the guard
        ended it is returned ("" when it staged)."""
        final, tmp = f"{self.root}/releases/{name}", f"{self.root}/releases/.{name}.partial"
        fresh = f"rm -rf {q(tmp)} && mkdir -p {q(tmp)}"
        archive = f"{tmp}/{pkg.filename}"
        old = final + ".old"
        swap = (f"rm -rf {q(old)} && mv {q(final)} {q(old)} && mv {q(tmp)} {q(final)} && rm -rf {q(old)}"
                if replace else f"mv {q(tmp)} {q(final)}")
        verify = (
            f"got=$(sha256sum {q(archive)} | cut -d' ' -f1); "
            f"if [ \"$got\" != {q(pkg.sha256)} ]; then rm -rf {q(tmp)}; "
            f"echo \"sha256 mismatch: expected {pkg.sha256}, got $got\" >&2; exit {SHA_MISMATCH_EXIT}; fi; "
            + _unpack_script(pkg.kind, archive, tmp)
            + f" && echo {q(pkg.sha256)} > {q(tmp + '/' + SHA_MARKER)} && echo {q(version)} > "
            f"{q(tmp + '/' + VERSION_MARKER)} && {swap}"
        )
        fetch, secret_input = "", None
        if pkg.url:
            fetch, secret_input = download_command(pkg.url, archive, auth)  # the secret goes by stdin
            # the download in a subshell: its own exit (curl's, or 127 without curl) is reported, not taken
            script = (f"{guard}{fresh} || exit 1; ( {fetch} ) || {{ rc=$?; rm -rf {q(tmp)}; "
                      f"echo \"{DOWNLOAD_MARK}$rc\" >&2; exit {DOWNLOAD_EXIT}; }}; {verify}")
        elif pkg.local_path:
            looked = await self._sh(f"{guard}{fresh}")
            if guard and looked.startswith(("present", "absent")):
                return looked  # the guard ended the command: nothing to fetch
            await self.transport.put(Path(pkg.local_path), archive)
            script = verify
        else:  # pragma: no cover - Package guarantees one of them
            raise ArtifactError(f"{pkg.app} {pkg.version}: package has neither url nor local path")
        try:
            return await self._sh(script, timeout=timeout, stdin=secret_input)
        except RemoteCommandFailed as exc:
            await self._sh(f"rm -rf {q(tmp)}", check=False)
            if exc.exit_status == DOWNLOAD_EXIT and DOWNLOAD_MARK in exc.output:
                said, _, code = exc.output.rpartition(DOWNLOAD_MARK)
                status = int(code.strip()) if code.strip().isdigit() else None
                raise RemoteCommandFailed(self.host, fetch, status, said) from None  # the download's own failure
            if exc.exit_status == SHA_MISMATCH_EXIT:
                raise ArtifactError(
                    f"{self.host}: sha256 of {pkg.filename} does not match the repository's "
                    f"({exc.output.strip().splitlines()[-1] if exc.output.strip() else pkg.sha256}); "
                    "the host was not touched. Check the artifact repository and the package's .sha256."
                ) from exc
            if exc.exit_status == UNSAFE_ARCHIVE_EXIT:
                raise ArtifactError(f"{self.host}: {pkg.filename} has unsafe paths; refused") from exc
            raise

    async def remove(self, names: list[str]) -> None:
        doomed = [n for n in names if is_plain_name(n)]
        if doomed:
            await self._sh("rm -rf " + " ".join(q(f"{self.root}/releases/{n}") for n in doomed), timeout=60)

    async def switch(self, name: str) -> None:
        await self._sh(switch_script(self.root, name))


def read_survey(output: str, root: str, host: str) -> Found:
    """What the survey script (:func:`graylift.core.layout.survey_script`) printed on ``host``; a layout graylift
    does not manage is a LayoutError naming the host."""
    try:
        return parse_survey(output, root)
    except LayoutError as exc:
        raise LayoutError(f"{host}: {exc}") from None


def switch_script(root: str, name: str) -> str:
    """Point ``<root>/current`` at ``releases/<name>`` (a new link renamed over it: atomic); nothing when it does
    already; exit 2 when the release dir is missing."""
    root = root.rstrip("/")
    release_dir, current, link = f"{root}/releases/{name}", f"{root}/current", f"{root}/.current.tmp"
    target = f"releases/{name}"
    return (f"[ -d {q(release_dir)} ] || {{ echo 'release dir missing: {release_dir}' >&2; exit 2; }}; "
            f"[ \"$(readlink {q(current)})\" = {q(target)} ] && exit 0; "
            f"ln -sfn {q(target)} {q(link)} && mv -Tf {q(link)} {q(current)}")


CURRENT_MOVED_EXIT = 86
CURRENT_MOVED = "graylift: current points elsewhere: "


def current_is_script(root: str, name: str) -> str:
    """Exit 0 when ``<root>/current`` still points at ``releases/<name>`` (relative or absolute, as
    :func:`graylift.core.layout.release_dir_of_link` reads it); else print where it points after
    :data:`CURRENT_MOVED` and exit :data:`CURRENT_MOVED_EXIT`. A check on the host, in the command that acts."""
    root = root.rstrip("/")
    links = [f"{prefix}{name}{tail}" for prefix in release_link_prefixes(root) for tail in ("", "/")]
    return (f"l=$(readlink {q(root + '/current')}); case \"$l\" in {' | '.join(q(link) for link in links)}) exit 0;; "
            f"esac; echo \"{CURRENT_MOVED}$l\"; exit {CURRENT_MOVED_EXIT}")


def _unpack_script(kind: PackageKind, archive: str, into: str) -> str:
    a, d = q(archive), q(into)
    if kind is PackageKind.TAR_GZ:
        # refuse absolute paths and parent-directory members before unpacking anything
        return (f"if tar -tzf {a} | grep -Eq '^/|(^|/)\\.\\.(/|$)'; then "
                f"echo 'package has unsafe paths (absolute or ..)' >&2; exit {UNSAFE_ARCHIVE_EXIT}; fi; "
                f"tar -xzf {a} -C {d} --no-same-owner")
    if kind is PackageKind.ZIP:
        return ("python3 - " + a + " " + d + " <<'PY'\n"
                "import sys, zipfile, os\n"
                "z = zipfile.ZipFile(sys.argv[1])\n"
                "bad = [n for n in z.namelist() if n.startswith('/') or '..' in n.split('/')]\n"
                "sys.exit('package has unsafe paths: ' + bad[0]) if bad else z.extractall(sys.argv[2])\n"
                "PY")
    return "true"  # war / jar: the file itself is the release (a war unpacks on start)
