"""Start real servers (sshd, HAProxy, ZooKeeper, Alertmanager, etcd) as plain daemon processes.

No systemd here: each server runs in its own session (it outlives the caller), its pid goes to a
pidfile in its workdir, its output to a log there, and every ``start_*`` returns only once the
server answers (or raises GrayliftError with the last lines of its log).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from graylift.errors import GrayliftError

ZOOKEEPER_CLASSPATH = "/etc/zookeeper/conf:/usr/share/java/zookeeper.jar"
READY_TIMEOUT = 30.0

# Popen objects of the servers this process started, kept so they are reaped (no zombies, no
# "still running" warnings); servers started by another process are found through their pidfile.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


@dataclass
class Service:
    name: str
    pid: int
    pidfile: Path
    log: Path
    port: int | None
    workdir: Path


_HANDED_OUT: set[tuple[str, int]] = set()
_HANDING = threading.Lock()


def free_port(address: str = "127.0.0.1") -> int:
    """A TCP port on ``address`` that nothing listens on right now and that this process has not handed out
    before. The kernel may give the same port to two binds in a row once the first socket is closed; seen: a
    test's HAProxy given one port for two frontends, which then shared each other's requests (HAProxy binds
    with SO_REUSEPORT, so nothing failed to start)."""
    held: list[socket.socket] = []
    try:
        with _HANDING:
            while True:
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                held.append(sock)  # kept bound until a new port is found: the kernel cannot hand it out again
                sock.bind((address, 0))
                port = int(sock.getsockname()[1])
                if (address, port) not in _HANDED_OUT:
                    _HANDED_OUT.add((address, port))
                    return port
    finally:
        for sock in held:
            sock.close()


def log_tail(log: Path, lines: int = 20) -> str:
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.strip().splitlines()[-lines:]) or "(empty log)"


def _alive(pid: int) -> bool:
    child = _CHILDREN.get(pid)
    if child is not None:
        return child.poll() is None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (exited, not yet reaped by its parent) is dead for our purposes
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state != "Z"


def wait_for_port(host: str, port: int, timeout: float, *, log: Path | None = None,
                  pid: int | None = None) -> None:
    """Wait until ``host:port`` accepts TCP connections; raise GrayliftError with the log tail if not."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            pass
        if pid is not None and not _alive(pid):
            raise GrayliftError(f"process {pid} exited before {host}:{port} accepted connections; log:\n"
                                + (log_tail(log) if log else "(no log)"))
        if time.monotonic() >= deadline:
            raise GrayliftError(f"{host}:{port} did not accept connections within {timeout:g}s; log:\n"
                                + (log_tail(log) if log else "(no log)"))
        time.sleep(0.05)


def _spawn(name: str, argv: list[str], workdir: Path, port: int | None) -> Service:
    workdir.mkdir(parents=True, exist_ok=True)
    log = workdir / f"{name}.log"
    pidfile = workdir / f"{name}.pid"
    with open(log, "ab") as out:
        proc = subprocess.Popen(argv, cwd=workdir, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                start_new_session=True)
    _CHILDREN[proc.pid] = proc
    pidfile.write_text(f"{proc.pid}\n")
    return Service(name=name, pid=proc.pid, pidfile=pidfile, log=log, port=port, workdir=workdir)


def _ready_or_stop(service: Service, check: object = None, timeout: float = READY_TIMEOUT) -> Service:
    """Wait for the service's port (and an optional extra check); stop it and raise if it never comes up."""
    try:
        if service.port is not None:
            wait_for_port("127.0.0.1", service.port, timeout, log=service.log, pid=service.pid)
        if callable(check):
            deadline = time.monotonic() + timeout
            while not check():
                if not _alive(service.pid) or time.monotonic() >= deadline:
                    raise GrayliftError(f"{service.name} did not become ready; log:\n{log_tail(service.log)}")
                time.sleep(0.05)
    except BaseException:
        stop_service(service)
        raise
    return service


def _require(binary: str) -> str:
    path = shutil.which(binary) or (binary if os.path.isabs(binary) and os.path.exists(binary) else None)
    if path is None:
        raise GrayliftError(f"{binary} is not installed (apt-get install it first)")
    return path


def start_zookeeper(workdir: Path, port: int) -> Service:
    """A standalone ZooKeeper on 127.0.0.1:port, data under workdir/data."""
    java = _require("java")
    data = workdir / "data"
    data.mkdir(parents=True, exist_ok=True)
    cfg = workdir / "zoo.cfg"
    cfg.write_text(
        "tickTime=2000\n"
        f"dataDir={data}\n"
        f"clientPort={port}\n"
        "clientPortAddress=127.0.0.1\n"
        "maxClientCnxns=0\n"
        "admin.enableServer=false\n"
        "4lw.commands.whitelist=srvr,ruok\n"
    )
    argv = [java, "-Xmx256m", "-XX:+UseSerialGC", f"-Dzookeeper.log.dir={workdir}",
            "-Dzookeeper.root.logger=INFO,CONSOLE", "-Dzookeeper.console.threshold=INFO",
            "-cp", ZOOKEEPER_CLASSPATH, "org.apache.zookeeper.server.quorum.QuorumPeerMain", str(cfg)]
    service = _spawn("zookeeper", argv, workdir, port)
    return _ready_or_stop(service, check=lambda: _four_letter("127.0.0.1", port, b"ruok") == b"imok")


def _four_letter(host: str, port: int, word: bytes) -> bytes:
    try:
        with socket.create_connection((host, port), timeout=1) as sock:
            sock.sendall(word)
            return sock.recv(64)
    except OSError:
        return b""


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


def start_alertmanager(workdir: Path, port: int) -> Service:
    """A single-node Alertmanager on 127.0.0.1:port (no clustering) with a do-nothing receiver."""
    binary = _require("prometheus-alertmanager")
    cfg = workdir / "alertmanager.yml"
    workdir.mkdir(parents=True, exist_ok=True)
    cfg.write_text("route:\n  receiver: blackhole\nreceivers:\n  - name: blackhole\n")
    argv = [binary, f"--config.file={cfg}", f"--storage.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="]
    service = _spawn("alertmanager", argv, workdir, port)
    return _ready_or_stop(service, check=lambda: _http_ok(f"http://127.0.0.1:{port}/-/ready"))


def start_haproxy(workdir: Path, config_text: str) -> Service:
    """HAProxy with ``config_text`` (checked with ``haproxy -c`` first), run in its own session.

    ``Service.port`` is None: the caller knows which ports its config binds.
    """
    binary = _require("haproxy")
    workdir.mkdir(parents=True, exist_ok=True)
    cfg = workdir / "haproxy.cfg"
    cfg.write_text(config_text)
    check = subprocess.run([binary, "-c", "-f", str(cfg)], capture_output=True, text=True, check=False)
    if check.returncode != 0:
        message = "\n".join(line for line in (check.stdout + check.stderr).splitlines()
                            if line.strip() and "[NOTICE]" not in line)
        raise GrayliftError(f"HAProxy rejected {cfg}:\n{message}")
    service = _spawn("haproxy", [binary, "-db", "-f", str(cfg)], workdir, None)
    deadline = time.monotonic() + READY_TIMEOUT
    # Ready when every stats socket in the config answers.
    sockets = [line.split()[2] for line in config_text.splitlines()
               if line.strip().startswith("stats socket") and len(line.split()) > 2]
    for path in sockets:
        while not _unix_answers(path):
            if not _alive(service.pid) or time.monotonic() >= deadline:
                stop_service(service)
                raise GrayliftError(f"HAProxy did not open its stats socket {path}; log:\n"
                                    f"{log_tail(service.log)}")
            time.sleep(0.05)
    if not sockets:
        time.sleep(0.2)
        if not _alive(service.pid):
            raise GrayliftError(f"HAProxy exited at start; log:\n{log_tail(service.log)}")
    return service


def _unix_answers(path: str) -> bool:
    if not os.path.exists(path):
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(1)
            sock.connect(path)
            sock.sendall(b"show info\n")
            return bool(sock.recv(64))
    except OSError:
        return False


def start_etcd(workdir: Path, port: int) -> Service:
    """A single-member etcd with its client URL on http://127.0.0.1:port (peer port picked free)."""
    binary = _require("etcd")
    peer = free_port()
    argv = [binary, "--name", "graylift", f"--data-dir={workdir / 'data'}",
            f"--listen-client-urls=http://127.0.0.1:{port}", f"--advertise-client-urls=http://127.0.0.1:{port}",
            f"--listen-peer-urls=http://127.0.0.1:{peer}", f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
            f"--initial-cluster=graylift=http://127.0.0.1:{peer}", "--log-level=warn"]
    service = _spawn("etcd", argv, workdir, port)
    return _ready_or_stop(service, check=lambda: _http_ok(f"http://127.0.0.1:{port}/health"))


def etcd_register(port: int, keys: dict[str, str]) -> None:
    """Put ``keys`` into the etcd on 127.0.0.1:port (as service instances register themselves)."""
    for key, value in keys.items():
        body = json.dumps({"key": base64.b64encode(key.encode()).decode(),
                           "value": base64.b64encode(value.encode()).decode()}).encode()
        req = urllib.request.Request(f"http://127.0.0.1:{port}/v3/kv/put", data=body,
                                     headers={"Content-Type": "application/json"})
        urllib.request.urlopen(req, timeout=5).close()


def start_sshd(workdir: Path, port: int, *, authorized_key: str, listen: str = "127.0.0.1") -> Service:
    """An sshd on listen:port with its own ed25519 host key and key-only auth.

    Writes ``workdir/known_hosts`` with the host key for clients: host-key checking stays on.
    """
    sshd = _require("/usr/sbin/sshd")
    workdir.mkdir(parents=True, exist_ok=True)
    host_key = workdir / "ssh_host_ed25519_key"
    if not host_key.exists():
        keygen = ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "graylift-lab", "-f", str(host_key)]
        subprocess.run(keygen, check=True, capture_output=True)
    authorized = workdir / "authorized_keys"
    authorized.write_text(authorized_key.strip() + "\n")
    authorized.chmod(0o600)
    cfg = workdir / "sshd_config"
    cfg.write_text(
        f"Port {port}\n"
        f"ListenAddress {listen}\n"
        f"HostKey {host_key}\n"
        f"AuthorizedKeysFile {authorized}\n"
        "PidFile none\n"
        "PubkeyAuthentication yes\n"
        "PasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\n"
        "PermitRootLogin prohibit-password\n"
        "UsePAM no\n"
        "StrictModes no\n"
        "UseDNS no\n"
        "PrintMotd no\n"
        "MaxStartups 100:30:300\n"
        "MaxSessions 100\n"
        "Subsystem sftp internal-sftp\n"
        "LogLevel INFO\n"
    )
    os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # sshd's privilege separation directory
    check = subprocess.run([sshd, "-t", "-f", str(cfg)], capture_output=True, text=True, check=False)
    if check.returncode != 0:
        raise GrayliftError(f"sshd rejected {cfg}:\n{(check.stdout + check.stderr).strip()}")
    public = (workdir / "ssh_host_ed25519_key.pub").read_text().split()
    where = listen if port == 22 else f"[{listen}]:{port}"
    (workdir / "known_hosts").write_text(f"{where} {public[0]} {public[1]}\n")
    service = _spawn("sshd", [sshd, "-D", "-e", "-f", str(cfg)], workdir, port)
    try:
        wait_for_port(listen, port, READY_TIMEOUT, log=service.log, pid=service.pid)
    except BaseException:
        stop_service(service)
        raise
    return service


def stop_service(service: Service, timeout: float = 10) -> None:
    """TERM the service's process group, then KILL it after ``timeout``; idempotent."""
    _stop(service.pid, timeout)
    service.pidfile.unlink(missing_ok=True)


def stop_pidfile(pidfile: Path, timeout: float = 10) -> None:
    """Stop the process named in ``pidfile`` (if any) and remove the file; idempotent."""
    try:
        pid = int(pidfile.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        pidfile.unlink(missing_ok=True)
        return
    _stop(pid, timeout)
    pidfile.unlink(missing_ok=True)


def _signal(pid: int, sig: signal.Signals) -> None:
    try:  # the server leads its own session: signal its whole group (e.g. sshd's session children)
        if os.getpgid(pid) == pid:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _stop(pid: int, timeout: float) -> None:
    if pid <= 1 or not _alive(pid):
        _CHILDREN.pop(pid, None)
        return
    _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if _alive(pid):
        _signal(pid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
    child = _CHILDREN.pop(pid, None)
    if child is not None:
        child.wait(timeout=5)
