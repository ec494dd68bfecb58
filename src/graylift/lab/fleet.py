"""Hosts as Linux network namespaces on a bridge, each with its own mounts, hostname, PID namespace and sshd.

Each host runs ``unshare -m -u -p -f --mount-proc`` inside its netns; the forked shell mounts the host's
own directories over ``/srv``, ``/root`` and ``/tmp``, a tmpfs on ``/run``, drops the copied ``/run/netns``
mounts, and then becomes ``sshd -D`` as the host's PID 1. Killing that PID 1 takes the whole host down.
Inside, the host's own directory is at ``/run/host`` (the state dir may sit under ``/tmp``, which the
host's own ``/tmp`` covers).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import os
import shlex
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from graylift.errors import GrayliftError
from graylift.lab import naming

SSHD = "/usr/sbin/sshd"
HOST_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
READY_TIMEOUT = 60.0

# The unshare processes this Python process started, kept so they are reaped at `down`.
_CHILDREN: dict[str, list[subprocess.Popen[bytes]]] = {}

HOST_INIT = r"""
set -eu
name=$1 address=$2 prefix=$3 dir=$4
hostname "$name"
ip link set lo up
ip addr add "$address/$prefix" dev eth0
ip link set eth0 up
umount -l /run/netns 2>/dev/null || true
mount -t tmpfs -o mode=0755 tmpfs /run
mkdir -p /run/sshd /run/host
mount --bind "$dir" /run/host
mount --bind /run/host/srv /srv
mount --bind /run/host/root /root
mount --bind /run/host/tmp /tmp
exec /usr/sbin/sshd -D -f /run/host/sshd_config -E /run/host/sshd.log
"""

SSHD_CONFIG = """\
Port 22
ListenAddress 0.0.0.0
HostKey {host_key}
AuthorizedKeysFile .ssh/authorized_keys
PidFile none
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
UsePAM no
StrictModes no
UseDNS no
PrintMotd no
PrintLastLog no
MaxStartups 100:30:300
MaxSessions 100
Subsystem sftp internal-sftp
LogLevel ERROR
SetEnv PATH={path}
"""


@dataclass(frozen=True)
class HostSpec:
    name: str
    index: int
    address: str
    netns: str
    veth: str
    dir: Path


def require_root() -> None:
    if os.geteuid() != 0:
        raise GrayliftError("graylift lab needs root (network namespaces) — run it with sudo")


def run(argv: Sequence[str], *, input: str | None = None,
        check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a local command; a failure becomes a GrayliftError naming the command and its stderr."""
    try:
        done = subprocess.run(list(argv), input=input, capture_output=True, text=True, check=False,
                              timeout=120)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise GrayliftError(f"{shlex.join(argv)}: {exc}") from exc
    if check and done.returncode != 0:
        raise GrayliftError(f"{shlex.join(argv)} failed (exit {done.returncode}): {done.stderr.strip()}")
    return done


@contextlib.contextmanager
def slot_lock() -> Iterator[None]:
    """An exclusive lock (flock) over choosing a slot and creating its bridge, shared by every lab on this machine."""
    import fcntl

    with open("/run/graylift-lab-slots.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def pick_slot(name: str) -> int:
    """The lab's /20 inside 10.213.0.0/16: its preferred slot, or the next one no interface overlaps."""
    used = []
    for line in run(["ip", "-4", "-o", "addr", "show"]).stdout.splitlines():
        fields = line.split()
        if len(fields) > 3 and fields[2] == "inet":
            used.append(ipaddress.IPv4Interface(fields[3]).network)
    first = naming.preferred_slot(name)
    for step in range(naming.SLOTS):
        slot = (first + step) % naming.SLOTS
        if not any(naming.slot_network(slot).overlaps(net) for net in used):
            return slot
    raise GrayliftError("no free /20 left in 10.213.0.0/16 for another lab: take a lab down first "
                        "(`ip -4 addr` shows who uses it)")


NEIGH_SYSCTLS = ("gc_thresh1", "gc_thresh2", "gc_thresh3")
BIG_NEIGH_TABLE = (4096, 8192, 16384)
BIG_LAB = 400  # past ~450 hosts the default ARP table (128/512/1024) drops entries: hosts become unreachable
NEIGH_RECORD = Path("/run/graylift-lab-neigh.json")  # the values found, and the labs that needed more


def _neigh_path(key: str) -> Path:
    return Path("/proc/sys/net/ipv4/neigh/default") / key


def raise_neighbour_table(lab: str, count: int) -> None:
    """A lab of more than BIG_LAB hosts raises the shared ARP table's limits (never lowers them); the values
    found are recorded and put back when the last such lab goes down. Called under :func:`slot_lock`."""
    if count <= BIG_LAB:
        return
    record = json.loads(NEIGH_RECORD.read_text()) if NEIGH_RECORD.exists() else {
        "found": {key: int(_neigh_path(key).read_text()) for key in NEIGH_SYSCTLS}, "labs": []}
    for key, value in zip(NEIGH_SYSCTLS, BIG_NEIGH_TABLE, strict=True):
        if int(_neigh_path(key).read_text()) < value:
            _neigh_path(key).write_text(f"{value}\n")
    record["labs"] = sorted({*record["labs"], lab})
    NEIGH_RECORD.write_text(json.dumps(record) + "\n")


def restore_neighbour_table(lab: str) -> None:
    """Put the ARP table's limits back as found once no lab that raised them is up. Under :func:`slot_lock`."""
    if not NEIGH_RECORD.exists():
        return
    record = json.loads(NEIGH_RECORD.read_text())
    record["labs"] = [name for name in record["labs"] if name != lab]
    if record["labs"]:
        NEIGH_RECORD.write_text(json.dumps(record) + "\n")
        return
    for key, value in record["found"].items():
        _neigh_path(key).write_text(f"{value}\n")
    NEIGH_RECORD.unlink()


def generate_keypair(private: Path, comment: str) -> str:
    """Write an ed25519 key pair (``private`` and ``private.pub``); return the public key line."""
    from graylift.adapters.transport._asyncssh import asyncssh  # imported here: `import graylift.lab` stays light

    key = asyncssh.generate_private_key("ssh-ed25519", comment=comment)
    private.write_bytes(key.export_private_key("openssh"))
    private.chmod(0o600)
    public = key.export_public_key("openssh").decode().strip()
    private.with_name(private.name + ".pub").write_text(public + "\n")
    return public


def prepare_host_dir(spec: HostSpec, client_public_key: str) -> str:
    """Create the host's directories, host key and sshd config; return its known_hosts line."""
    for sub in ("srv", "root/.ssh", "tmp", "etc"):
        (spec.dir / sub).mkdir(parents=True, exist_ok=True)
    (spec.dir / "tmp").chmod(0o1777)
    (spec.dir / "root" / ".ssh" / "authorized_keys").write_text(client_public_key + "\n")
    host_key = spec.dir / "etc" / "ssh_host_ed25519_key"
    public = generate_keypair(host_key, f"root@{spec.name}")
    in_host_key = "/run/host/" + host_key.relative_to(spec.dir).as_posix()
    (spec.dir / "sshd_config").write_text(SSHD_CONFIG.format(host_key=in_host_key, path=HOST_PATH))
    key_type, key_data = public.split()[:2]
    return f"{spec.address} {key_type} {key_data}"


def create_network(lab: str, slot: int, specs: Sequence[HostSpec]) -> None:
    """Bridge, one netns and one veth pair per host (the netns end is called eth0). No route leaves."""
    bridge = naming.bridge_name(lab)
    prefix = naming.slot_network(slot).prefixlen
    lines = [f"link add {bridge} type bridge",
             f"addr add {naming.bridge_address(slot)}/{prefix} dev {bridge}",
             f"link set {bridge} up"]
    for spec in specs:
        lines += [f"netns add {spec.netns}",
                  f"link add {spec.veth} type veth peer name eth0 netns {spec.netns}",
                  f"link set {spec.veth} master {bridge} up"]
    run(["ip", "-batch", "-"], input="\n".join(lines) + "\n")


START_WAVE = 100  # hosts started at once: 1000 sshds starting together on 2 cores miss READY_TIMEOUT


def start_hosts(lab: str, slot: int, specs: Sequence[HostSpec]) -> dict[str, int]:
    """Start the hosts' PID 1s, START_WAVE at a time, each wave ready (sshd answers) before the next starts;
    return host name -> host-side PID 1."""
    pids: dict[str, int] = {}
    for first in range(0, len(specs), START_WAVE):
        pids |= _start_wave(lab, slot, specs[first:first + START_WAVE])
    return pids


def _start_wave(lab: str, slot: int, specs: Sequence[HostSpec]) -> dict[str, int]:
    prefix = str(naming.slot_network(slot).prefixlen)
    children = _CHILDREN.setdefault(lab, [])
    procs: dict[str, subprocess.Popen[bytes]] = {}
    for spec in specs:
        argv = ["ip", "netns", "exec", spec.netns,
                "unshare", "-m", "-u", "-p", "-f", "--kill-child", "--mount-proc", "--propagation", "private",
                "sh", "-c", HOST_INIT, "host-init", spec.name, spec.address, prefix, str(spec.dir)]
        with open(spec.dir / "init.log", "ab") as log:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                    start_new_session=True, env={"PATH": HOST_PATH})
        children.append(proc)
        procs[spec.name] = proc
    asyncio.run(_wait_for_sshd(specs, procs))
    return {spec.name: _pid_one(procs[spec.name].pid) for spec in specs}


async def _wait_for_sshd(specs: Sequence[HostSpec], procs: dict[str, subprocess.Popen[bytes]]) -> None:
    async def one(spec: HostSpec) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            try:
                _, writer = await asyncio.wait_for(asyncio.open_connection(spec.address, 22), 1)
                writer.close()
                return
            except (OSError, TimeoutError):
                pass
            if procs[spec.name].poll() is not None or time.monotonic() > deadline:
                log = "\n".join(_tail(spec.dir / "init.log") + _tail(spec.dir / "sshd.log"))
                raise GrayliftError(f"lab host {spec.name} ({spec.address}) did not start sshd; log:\n{log}")
            await asyncio.sleep(0.05)

    await asyncio.gather(*(one(spec) for spec in specs))


def _tail(path: Path, lines: int = 10) -> list[str]:
    try:
        return path.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return []


def _pid_one(unshare_pid: int) -> int:
    """The forked child of ``unshare`` (PID 1 of the host's PID namespace), as the root namespace sees it."""
    children = Path(f"/proc/{unshare_pid}/task/{unshare_pid}/children").read_text().split()
    if len(children) != 1:
        raise GrayliftError(f"unshare (pid {unshare_pid}) has {len(children)} children, expected one: "
                            "the host's PID 1")
    return int(children[0])


def _netns_inodes(lab: str) -> dict[int, str]:
    prefix = naming.link_prefix(lab)
    found = {}
    netns_dir = Path("/run/netns")
    if netns_dir.is_dir():
        for entry in netns_dir.iterdir():
            if entry.name.startswith(prefix):
                try:
                    found[entry.stat().st_ino] = entry.name
                except OSError:
                    continue
    return found


def _pids_in(netns_inodes: dict[int, str]) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.stat(entry / "ns" / "net").st_ino in netns_inodes:
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def destroy_network(lab: str) -> None:
    """Kill every process in the lab's namespaces, delete the namespaces, veths and bridge. Idempotent."""
    inodes = _netns_inodes(lab)
    pids = _pids_in(inodes) if inodes else []
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    for proc in _CHILDREN.pop(lab, []):
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
    deadline = time.monotonic() + 10
    while pids and time.monotonic() < deadline:
        pids = [pid for pid in pids if _running(pid)]
        time.sleep(0.02)
    prefix = naming.link_prefix(lab)
    lines = [f"netns del {ns}" for ns in sorted(inodes.values())]
    for line in run(["ip", "-o", "link", "show"]).stdout.splitlines():
        link = line.split(":")[1].strip().split("@")[0]
        if link.startswith(prefix):
            lines.append(f"link del {link}")
    if lines:
        run(["ip", "-force", "-batch", "-"], input="\n".join(lines) + "\n", check=False)
    leftovers = _netns_inodes(lab)
    if leftovers:
        raise GrayliftError(f"could not delete network namespaces {sorted(leftovers.values())}")


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def nsenter_argv(pid: int, command: str) -> list[str]:
    return ["nsenter", "-t", str(pid), "-m", "-u", "-n", "-p", "--", "/bin/sh", "-c", command]


def exec_in_host(host_name: str, pid: int, command: str, timeout: float) -> subprocess.CompletedProcess[str]:
    """Run a shell command inside a host's namespaces (as its root, HOME=/root)."""
    env = {"PATH": HOST_PATH, "HOME": "/root", "LANG": "C.UTF-8"}
    try:
        return subprocess.run(nsenter_argv(pid, command), capture_output=True, text=True, timeout=timeout,
                              env=env, cwd="/", check=False)
    except subprocess.TimeoutExpired as exc:
        raise GrayliftError(f"lab host {host_name}: command timed out after {timeout:g}s: {command}") from exc


def set_link(veth: str, up: bool) -> None:
    run(["ip", "link", "set", veth, "up" if up else "down"])
