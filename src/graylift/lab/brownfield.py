"""A fleet another tool installed: a plain shell script, no graylift, the way Capistrano or a Jenkins job does it.

``releases/<version>`` unpacked from the artifact server, ``current`` an *absolute* symlink to it, the app
started. No graylift marker files: what a first graylift release finds on a brownfield fleet.
"""

from __future__ import annotations

import shlex

from graylift.errors import GrayliftError
from graylift.lab.info import LabInfo
from graylift.lab.lifecycle import host_exec

SCRIPT = """set -eu
d=/srv/{app}
mkdir -p "$d/releases/{version}"
curl -fsS {url} | tar -xz -C "$d/releases/{version}"
ln -sfn "$d/releases/{version}" "$d/current"
sh "$d/current/bin/start"
"""


def install_by_script(info: LabInfo, app: str, version: str) -> None:
    """Install ``app`` ``version`` on every host of the lab with a plain script (pyapp only)."""
    if app != "pyapp":
        raise GrayliftError("the brownfield installer knows the lab's pyapp only")
    url = f"{info.artifact_base_url}/{app}/{version}/{app}-{version}.tar.gz"
    script = SCRIPT.format(app=app, version=version, url=shlex.quote(url))
    for host in info.hosts:
        done = host_exec(info, host.name, script, timeout=60)
        if done.returncode != 0:
            raise GrayliftError(f"{host.name}: the install script failed: {done.stderr.strip()}")
