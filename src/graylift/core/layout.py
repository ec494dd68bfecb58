"""The layout of an app on a host, as graylift reads it: ``<deploy_dir>/current -> releases/<dir>``.

One read-only command (:func:`survey_script`) prints what is there; :func:`parse_survey` turns its output
into a :class:`Found`, or refuses a layout graylift does not understand with a message saying what it found.
What a pre-check found is the one source of a host's previous version and of its undo.

Release directories are immutable: ``releases/<version>`` holds one build, recorded by its sha256 in
``.graylift-sha256`` (and its version in ``.graylift-version``). An app that opts in to rebuilt versions
(``package.rebuilt_versions``, for ``-SNAPSHOT`` builds) stages each build into ``<version>+<sha256[:12]>``.

Worked example, a host another tool installed (Capistrano-style absolute link, no markers)::

    >>> out = "current link /srv/shop/releases/1.0.0\\nrelease 1.0.0 - -\\nrelease 0.9.0 - -\\n"
    >>> found = parse_survey(out, "/srv/shop")
    >>> found.layout, found.version, found.sha256, sorted(found.releases)
    ('release', '1.0.0', None, ['0.9.0', '1.0.0'])
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from graylift.core.model import is_plain_name
from graylift.errors import GrayliftError

SHA_MARKER = ".graylift-sha256"
VERSION_MARKER = ".graylift-version"
_SHA = re.compile(r"^[0-9a-f]{64}$")


class LayoutError(GrayliftError):
    """The host's deploy dir is laid out in a way graylift does not understand; nothing was touched."""


@dataclass(frozen=True)
class Found:
    """What a pre-check found on a host.

    ``layout`` is ``fresh`` (no ``current``: nothing installed) or ``release`` (``current`` ->
    ``releases/<current_dir>``). ``releases`` maps each release dir to the sha256 graylift recorded in it
    (None for a dir another tool made); ``versions`` maps a dir to its version where the dir's name is not it;
    ``newest_first`` lists the release dirs newest first where the survey said so (None: order unknown).
    """

    layout: str
    current_dir: str | None = None
    version: str | None = None
    sha256: str | None = None
    releases: dict[str, str | None] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    newest_first: tuple[str, ...] | None = None

    @property
    def fresh(self) -> bool:
        return self.layout == "fresh"

    def version_of(self, directory: str) -> str:
        return self.versions.get(directory, directory)

    def release_dirs(self, name: str) -> ReleaseDirs | None:
        """What a read of ``releases/`` for staging ``name`` would say (:class:`ReleaseDirs`, without the free
        space), from this survey; None when it did not list the dirs newest first.

        >>> Found("release", "1.0", "1.0", None, {"2.0": "a" * 64, "1.0": None}, {}, ("2.0", "1.0")).release_dirs("2.0")
        ... # doctest: +ELLIPSIS
        ReleaseDirs(present=True, sha256='aaa...', current='1.0', listing=('2.0', '1.0'), free_bytes=None)
        """
        if self.newest_first is None:
            return None
        return ReleaseDirs(name in self.releases, self.releases.get(name), self.current_dir, self.newest_first)

    def with_staged(self, directory: str, sha256: str | None, version: str) -> Found:
        """What a survey would find after ``releases/<directory>`` (of ``version``) was staged: the newest dir.

        >>> Found("release", "1.0", "1.0", None, {"1.0": None}, {}, ("1.0",)).with_staged("2.0-ab", "ab", "2.0")
        ... # doctest: +NORMALIZE_WHITESPACE
        Found(layout='release', current_dir='1.0', version='1.0', sha256=None,
              releases={'2.0-ab': 'ab', '1.0': None}, versions={'2.0-ab': '2.0'}, newest_first=('2.0-ab', '1.0'))
        """
        versions = {**self.versions, directory: version} if directory != version else dict(self.versions)
        order = None if self.newest_first is None else \
            (directory, *(d for d in self.newest_first if d != directory))
        return replace(self, releases={directory: sha256, **{d: s for d, s in self.releases.items() if d != directory}},
                       versions=versions, newest_first=order)

    def to_json(self) -> dict[str, Any]:
        data = {"layout": self.layout, "current_dir": self.current_dir, "version": self.version,
                "sha256": self.sha256, "releases": dict(self.releases), "versions": dict(self.versions)}
        return data | ({} if self.newest_first is None else {"newest_first": list(self.newest_first)})

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Found:
        order = data.get("newest_first")
        return cls(data["layout"], data.get("current_dir"), data.get("version"), data.get("sha256"),
                   dict(data.get("releases") or {}), dict(data.get("versions") or {}),
                   None if order is None else tuple(order))


@dataclass(frozen=True)
class ReleaseDirs:
    """One read of ``releases/`` for the stage step: whether ``releases/<name>`` is there and the sha256
    graylift recorded in it, the release dir ``current`` points at, and every release dir, newest first.
    When ``releases/<name>`` is absent, also the bytes free where it would be staged (``free_bytes``; None
    when present, or when the host's answer was not a number)."""

    present: bool
    sha256: str | None = None
    current: str | None = None
    listing: tuple[str, ...] = ()
    free_bytes: int | None = None


def release_dirs_script(deploy_dir: str, name: str) -> str:
    """A read-only shell script for :func:`parse_release_dirs`: ``present SHA`` or ``absent AVAIL BSIZE`` (the
    free blocks and their size where it would be staged: ``releases/`` or its nearest existing parent),
    ``current LINK``, then ``ls -1t`` of ``releases/``."""
    d = shlex.quote(deploy_dir.rstrip("/"))
    return (f"{_if_present(deploy_dir, name)}; "
            f"else {_nearest(d)}; echo \"absent $(stat -f -c '%a %S' \"$f\" 2>/dev/null)\"; fi; "
            f"echo \"current $(readlink {d}/current)\"; ls -1t {d}/releases 2>/dev/null; true")


def stage_guard_script(deploy_dir: str, name: str, min_free: int) -> str:
    """The shell that goes before a stage in the same command when nothing is to be fetched for a dir that is
    there, or for a disk without ``min_free`` bytes where it would be staged: it prints the first line of
    :func:`release_dirs_script` (``present SHA`` / ``absent AVAIL BSIZE``) and ends the command (exit 0);
    else it prints nothing and the stage goes on. An unreadable free space lets the stage go on (it fails
    cleanly on a full disk)."""
    d = shlex.quote(deploy_dir.rstrip("/"))
    return (f"{_if_present(deploy_dir, name)}; exit 0; fi; {_nearest(d)}; "
            f"set -- $(stat -f -c '%a %S' \"$f\" 2>/dev/null); case \"$#:$1$2\" in 2:*[!0-9]*) ;; "
            f"2:*) if [ $(($1 * $2)) -lt {int(min_free)} ]; then echo \"absent $1 $2\"; exit 0; fi;; esac; ")


def _if_present(deploy_dir: str, name: str) -> str:
    """Shell, an ``if`` left open: when ``releases/<name>`` is there, print ``present SHA`` (the first line
    :func:`parse_release_dirs` reads; SHA empty without a marker)."""
    final = shlex.quote(f"{deploy_dir.rstrip('/')}/releases/{name}")
    return f"if [ -d {final} ]; then s=; {_read_line('s', f'{final}/{SHA_MARKER}')}; echo \"present $s\""


def _nearest(quoted_deploy_dir: str) -> str:
    """Shell: ``$f`` is ``releases/`` or its nearest existing parent (where a release dir would be made)."""
    return f'f={quoted_deploy_dir}/releases; while [ ! -d "$f" ]; do f=${{f%/*}}; f=${{f:-/}}; done'


def _read_line(var: str, path: str) -> str:
    """Shell: the first line of ``path`` (a quoted word) into ``$var``, by the shell's own ``read``: no
    program started per marker, and never a part of a line; silent if the file cannot be read."""
    return f"IFS= read -r {var} 2>/dev/null < {path}"


def parse_release_dirs(output: str, deploy_dir: str) -> ReleaseDirs:
    """The :class:`ReleaseDirs` of :func:`release_dirs_script`'s output.

    >>> parse_release_dirs("present " + "a" * 64 + "\\ncurrent releases/1.0\\n2.0\\n.2.1.partial\\n1.0\\n", "/srv/a")
    ... # doctest: +ELLIPSIS
    ReleaseDirs(present=True, sha256='aaa...', current='1.0', listing=('2.0', '1.0'), free_bytes=None)
    >>> parse_release_dirs("absent 1000 4096\\ncurrent \\n", "/srv/a")
    ReleaseDirs(present=False, sha256=None, current=None, listing=(), free_bytes=4096000)
    """
    lines = output.splitlines()
    head = (lines[0] if lines else "").split()
    present = bool(head) and head[0] == "present"
    sha = head[1] if present and len(head) > 1 and _SHA.match(head[1]) else None
    free = int(head[1]) * int(head[2]) if not present and len(head) == 3 and all(
        n.isdigit() for n in head[1:]) else None
    link = lines[1].removeprefix("current").strip() if len(lines) > 1 else ""
    listing = tuple(n for n in lines[2:] if n and not n.startswith(".") and is_plain_name(n))
    return ReleaseDirs(present, sha, release_dir_of_link(link, deploy_dir) if link else None, listing, free)


SURVEY_ORDER = "order newest-first"
"""The survey's line saying its ``release`` lines come newest first (``ls -1t``)."""


def survey_script(deploy_dir: str) -> str:
    """A read-only shell script printing ``current link|other|none ...``, :data:`SURVEY_ORDER`, and one
    ``release DIR SHA VERSION`` line per release dir (``-`` for a missing marker), newest first."""
    d = shlex.quote(deploy_dir.rstrip("/"))
    sha, version = _read_line("s", f'"$r/{SHA_MARKER}"'), _read_line("v", f'"$r/{VERSION_MARKER}"')
    return (
        f"d={d}; "
        'if [ -L "$d/current" ]; then echo "current link $(readlink "$d/current")"; '
        'elif [ -e "$d/current" ]; then echo "current other $(stat -c %F "$d/current")"; '
        'else echo "current none"; fi; '
        f"echo '{SURVEY_ORDER}'; "
        'ls -1t "$d/releases" 2>/dev/null | while IFS= read -r n; do r="$d/releases/$n"; [ -d "$r" ] || continue; '
        f"s=; v=; {sha}; {version}; "
        'echo "release $n ${s:--} ${v:--}"; done'
    )


def parse_survey(output: str, deploy_dir: str) -> Found:
    """The :class:`Found` of a survey's output; LayoutError (saying what it found) for any other layout."""
    d = deploy_dir.rstrip("/")
    current_kind, link = "none", ""
    releases: dict[str, str | None] = {}
    versions: dict[str, str] = {}
    ordered = False
    for line in output.splitlines():
        parts = line.split(" ")
        if parts[0] == "current" and len(parts) >= 2:
            current_kind, link = parts[1], " ".join(parts[2:]).strip()
        elif line == SURVEY_ORDER:
            ordered = True
        elif parts[0] == "release" and len(parts) == 4 and is_plain_name(parts[1]):
            name, sha, version = parts[1], parts[2], parts[3]
            releases[name] = sha if _SHA.match(sha) else None
            if version != "-" and is_plain_name(version) and version != name:
                versions[name] = version
    order = tuple(releases) if ordered else None
    if current_kind == "none":
        return Found("fresh", releases=releases, versions=versions, newest_first=order)
    if current_kind != "link":
        raise LayoutError(f"{d}/current is a {link or current_kind}, not a symlink into {d}/releases/; graylift "
                          "manages current -> releases/<version>: move the install into releases/<version> and "
                          "make current a symlink to it")
    linked = release_dir_of_link(link, d)
    if linked is None:
        raise LayoutError(f"{d}/current points to {link!r}, outside {d}/releases/; graylift only switches "
                          "between dirs in releases/: move that install into releases/<version>")
    if linked not in releases:
        raise LayoutError(f"{d}/current points to releases/{linked}, which does not exist (a dangling link); "
                          "fix the link or reinstall that release")
    return Found("release", linked, versions.get(linked, linked), releases[linked], releases, versions, order)


def release_link_prefixes(deploy_dir: str) -> tuple[str, ...]:
    """How a ``current`` link may name a release dir: ``<prefix><dir>`` (a trailing ``/`` allowed).

    >>> release_link_prefixes("/srv/a/")
    ('./releases/', 'releases/', '/srv/a/releases/')
    """
    return "./releases/", "releases/", f"{deploy_dir.rstrip('/')}/releases/"


def release_dir_of_link(link: str, deploy_dir: str) -> str | None:
    """The release dir a ``current`` link names (relative ``releases/X`` or absolute), or None if outside.

    >>> release_dir_of_link("releases/1.0.0", "/srv/a"), release_dir_of_link("/srv/a/releases/1.0.0/", "/srv/a")
    ('1.0.0', '1.0.0')
    >>> release_dir_of_link("/opt/a/1.0.0", "/srv/a") is None
    True
    """
    path = link.rstrip("/")
    for prefix in release_link_prefixes(deploy_dir):
        if path.startswith(prefix):
            name = path[len(prefix):]
            return name if is_plain_name(name) and "/" not in name else None
    return None


def release_dir_name(version: str, sha256: str, *, rebuilt_versions: bool) -> str:
    """The directory a build is staged into.

    >>> release_dir_name("1.0-SNAPSHOT", "ab" * 32, rebuilt_versions=True)
    '1.0-SNAPSHOT+abababababab'
    """
    return f"{version}+{sha256[:12]}" if rebuilt_versions else version


def choose_release_dir(found: Found, version: str, expected_sha256: str | None) -> str | None:
    """A dir on the host that holds ``version`` (with ``expected_sha256`` if known), to go back to without
    the repository; None when there is none."""
    candidates = [d for d in found.releases if found.version_of(d) == version
                  or (d.startswith(version + "+") and found.versions.get(d, version) == version)]
    if expected_sha256 is not None:
        exact = [d for d in candidates if found.releases[d] == expected_sha256]
        if exact:
            return exact[0]
        candidates = [d for d in candidates if found.releases[d] is None]  # made by another tool: as found
    if found.current_dir in candidates:
        return found.current_dir
    return sorted(candidates)[-1] if candidates else None


def prune_plan(names: list[str], *, keep: set[str], rollback_versions: tuple[str, ...], count: int,
               version_of: Callable[[str], str]) -> list[str]:
    """Which release dirs to remove so ``count`` are left: never those in ``keep`` (the target, current,
    previous); then the versions a rollback would go to (newest first); then the newest others.

    ``names`` are the dirs newest first.

    >>> prune_plan(["5", "4", "2", "1"], keep={"5", "2"}, rollback_versions=("2", "1"), count=3,
    ...            version_of=lambda n: n)
    ['4']
    """
    wanted = [n for v in rollback_versions for n in names if version_of(n) == v and n not in keep]
    extra = list(dict.fromkeys([*wanted, *(n for n in names if n not in keep)]))
    room = max(0, count - len(keep))
    return [n for n in extra[room:] if is_plain_name(n)]
