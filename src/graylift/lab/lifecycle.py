"""``graylift lab up|down``: bring a whole lab up (hosts, artifacts, HAProxy, nginx, ZooKeeper, Alertmanager)
and take it down again, leaving nothing behind, even after a half-failed ``up``."""

from __future__ import annotations

import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from graylift.errors import GrayliftError
from graylift.lab import apps as sample_apps
from graylift.lab import artifacts, files, fleet, naming, services
from graylift.lab import nginx as lab_nginx
from graylift.lab import prometheus as lab_prometheus
from graylift.lab.info import LabApp, LabHost, LabInfo, run_dir_for, state_dir_for

PYAPP_PORT = 8080


def app_ports(apps: tuple[str, ...]) -> dict[str, int]:
    """pyapp on 8080; shop's Tomcat on 8080 too, or on 8081 when both run on the same hosts."""
    ports = {}
    if "pyapp" in apps:
        ports["pyapp"] = PYAPP_PORT
    if "shop" in apps:
        ports["shop"] = 8081 if "pyapp" in apps else 8080
    return ports


def lab_up(name: str = "lab", hosts: int = 10, apps: tuple[str, ...] = ("pyapp",),
           state_root: Path | None = None, lbs: tuple[str, ...] = ("haproxy",),
           nginx_layout: str = lab_nginx.BLOCK_IN_INCLUDE, prometheus: bool = False) -> LabInfo:
    """Start a lab of ``hosts`` hosts for ``apps``; return what it is (also saved as ``lab.json``).

    HAProxy and nginx both always run; ``lbs`` picks which of them the written ``graylift.yaml`` names
    (``("haproxy",)``, ``("nginx",)`` or ``("haproxy", "nginx")``), before the ZooKeeper registry.
    ``nginx_layout``: ``block-in-include`` or ``include-inside-upstream`` (see ``graylift.lab.nginx``).
    ``prometheus``: also run a Prometheus scraping the first app's ``/metrics`` on every host (``prometheus_url``).
    """
    fleet.require_root()
    lbs = files.check_lbs(lbs)
    lab_nginx.check_layout(nginx_layout)
    naming.check_lab_name(name)
    naming.check_host_count(hosts, name)
    apps = tuple(dict.fromkeys(apps))
    unknown = [a for a in apps if a not in sample_apps.APPS]
    if not apps or unknown:
        raise GrayliftError(f"unknown lab app(s) {unknown or list(apps)}: "
                            f"choose from {', '.join(sample_apps.APPS)}")
    state_dir = state_dir_for(name, state_root)
    if (state_dir / "lab.json").exists():
        raise GrayliftError(f"lab {name!r} is already up (state in {state_dir}): "
                            "run `graylift lab down` first")
    lab_down(name, state_root)  # leftovers of a crashed `up`
    try:
        info = _bring_up(name, hosts, apps, state_dir, lbs, nginx_layout)
        if prometheus:
            server = lab_prometheus.start_prometheus(state_dir / "services" / "prometheus", services.free_port(),
                                                     [(h.name, h.address) for h in info.hosts], info.apps[apps[0]].port)
            info.pidfiles["prometheus"] = str(server.pidfile)
            info.prometheus_url = f"http://127.0.0.1:{server.port}"
            info.save()
        return info
    except BaseException:
        lab_down(name, state_root)
        raise


def _bring_up(name: str, count: int, apps: tuple[str, ...], state_dir: Path, lbs: tuple[str, ...],
              nginx_layout: str) -> LabInfo:

    state_dir.mkdir(parents=True, mode=0o700)
    state_dir.chmod(0o700)
    artifact_dir = state_dir / "artifacts"
    with ThreadPoolExecutor(max_workers=1) as pool:
        build = pool.submit(sample_apps.build_apps, artifact_dir, apps)
        with fleet.slot_lock():  # two labs coming up at once (parallel tests) never pick the same slot
            slot = fleet.pick_slot(name)
            lab_hosts, specs = _plan_hosts(name, slot, count, apps, state_dir)
            fleet.raise_neighbour_table(name, count)
            fleet.create_network(name, slot, specs)
        ports = app_ports(apps)
        client_key = state_dir / "id_ed25519"
        client_public = fleet.generate_keypair(client_key, f"graylift-lab-{name}")
        known_lines = [fleet.prepare_host_dir(spec, client_public) for spec in specs]
        known_hosts = state_dir / "known_hosts"
        known_hosts.write_text("\n".join(known_lines) + "\n")
        for spec in specs:
            for app in apps:
                (spec.dir / "srv" / app).mkdir(parents=True, exist_ok=True)
            if "shop" in apps:
                sample_apps.install_tomcat_base(spec.dir / "srv", ports["shop"])
        pids = fleet.start_hosts(name, slot, specs)
        for host in lab_hosts:
            host.pid = pids[host.name]
        build.result()

    bridge_ip = naming.bridge_address(slot)
    svc_dir = state_dir / "services"
    art_port = services.free_port(bridge_ip)
    pidfiles = {"artifacts": str(artifacts.start_artifact_server(svc_dir / "artifacts", artifact_dir,
                                                                  bridge_ip, art_port))}
    zookeeper = services.start_zookeeper(svc_dir / "zookeeper", services.free_port())
    pidfiles["zookeeper"] = str(zookeeper.pidfile)
    alertmanager = services.start_alertmanager(svc_dir / "alertmanager", services.free_port())
    pidfiles["alertmanager"] = str(alertmanager.pidfile)
    run_dir = run_dir_for(name)
    run_dir.mkdir(parents=True, mode=0o700, exist_ok=True)
    haproxy_socket = str(run_dir / "haproxy.sock")
    frontends = _distinct_ports(apps)
    haproxy = services.start_haproxy(svc_dir / "haproxy",
                                     files.haproxy_config(haproxy_socket, frontends, ports, lab_hosts))
    pidfiles["haproxy"] = str(haproxy.pidfile)
    nginx = lab_nginx.start_nginx(svc_dir / "nginx", lab_hosts, ports, _distinct_ports(apps, set(frontends.values())),
                                  layout=nginx_layout)
    pidfiles["nginx"] = str(nginx.service.pidfile)

    info = LabInfo(
        name=name, state_dir=str(state_dir), config_path=str(state_dir / "graylift.yaml"),
        hosts_file=str(state_dir / "hosts.yaml"), client_key=str(client_key), known_hosts=str(known_hosts),
        bridge=naming.bridge_name(name), bridge_address=bridge_ip, subnet=str(naming.slot_network(slot)),
        hosts=lab_hosts,
        apps={app: LabApp(name=app, port=ports[app], frontend_url=f"http://127.0.0.1:{frontends[app]}",
                          deploy_dir=f"/srv/{app}", nginx_url=nginx.urls[app]) for app in apps},
        haproxy_socket=haproxy_socket, zookeeper_address=f"127.0.0.1:{zookeeper.port}",
        alertmanager_url=f"http://127.0.0.1:{alertmanager.port}",
        artifact_base_url=f"http://{bridge_ip}:{art_port}", artifact_dir=str(artifact_dir), pidfiles=pidfiles,
        nginx_conf=str(nginx.conf), nginx_pidfile=str(nginx.pidfile), nginx_includes=nginx.includes,
        nginx_layout=nginx.layout,
    )
    Path(info.config_path).write_text(files.graylift_config(
        state_dir=info.state_dir, client_key=info.client_key, known_hosts=info.known_hosts,
        artifact_base_url=info.artifact_base_url, apps=ports, haproxy_socket=haproxy_socket,
        zookeeper=info.zookeeper_address, alertmanager_url=info.alertmanager_url, lbs=lbs,
        nginx_includes=info.nginx_includes, nginx_conf=info.nginx_conf, hosts=count))
    Path(info.hosts_file).write_text(files.hosts_file(lab_hosts))
    info.save()
    return info


def _distinct_ports(apps: tuple[str, ...], taken: set[int] | None = None) -> dict[str, int]:
    """A free 127.0.0.1 port per app, none of them in ``taken`` nor twice."""
    used = set(taken or ())
    ports: dict[str, int] = {}
    for app in apps:
        port = services.free_port()
        while port in used:
            port = services.free_port()
        used.add(port)
        ports[app] = port
    return ports


def _plan_hosts(name: str, slot: int, count: int, apps: tuple[str, ...],
                state_dir: Path) -> tuple[list[LabHost], list[fleet.HostSpec]]:
    prefix = apps[0] if len(apps) == 1 else "host"
    lab_hosts, specs = [], []
    for index in range(1, count + 1):
        host_name = naming.host_name(prefix, index, count)
        spec = fleet.HostSpec(name=host_name, index=index, address=naming.host_address(slot, index),
                              netns=naming.host_netns(name, index), veth=naming.host_veth(name, index),
                              dir=state_dir / "hosts" / host_name)
        specs.append(spec)
        lab_hosts.append(LabHost(name=host_name, index=index, address=spec.address,
                                 group=naming.group_for(index), zone=naming.zone_for(index),
                                 netns=spec.netns, veth=spec.veth, pid=0, dir=str(spec.dir)))
    return lab_hosts, specs


def lab_down(name: str = "lab", state_root: Path | None = None) -> None:
    """Stop every server and host of the lab and delete its network and state dir. Idempotent; needs root."""
    fleet.require_root()
    naming.check_lab_name(name)
    state_dir = state_dir_for(name, state_root)
    services_dir = state_dir / "services"
    if services_dir.is_dir():
        for pidfile in sorted(services_dir.glob("*/*.pid")):
            services.stop_pidfile(pidfile, timeout=5)
        artifacts.reap()
    fleet.destroy_network(name)
    with fleet.slot_lock():
        fleet.restore_neighbour_table(name)
    for directory in (state_dir, run_dir_for(name)):
        if directory.exists():
            shutil.rmtree(directory)


def host_exec(info: LabInfo, host_name: str, command: str,
              timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """Run a shell command inside a lab host (its mounts, hostname, network and PID namespace)."""
    host = info.host(host_name)
    return fleet.exec_in_host(host.name, host.pid, command, timeout)


def partition(info: LabInfo, host_name: str, down: bool = True) -> None:
    """Cut a host off the network (its veth down), or heal it again (``down=False``)."""
    fleet.set_link(info.host(host_name).veth, up=not down)


def restart_host(info: LabInfo, host_name: str) -> None:
    """Boot a host whose PID 1 died (a crashed VM coming back): same network, address, dirs and host key; its
    apps are not started. Saves the new PID 1 in ``lab.json``."""
    host = info.host(host_name)
    fleet.run(["ip", "-n", host.netns, "addr", "flush", "dev", "eth0"])
    spec = fleet.HostSpec(name=host.name, index=host.index, address=host.address, netns=host.netns,
                          veth=host.veth, dir=Path(host.dir))
    slot = int(info.subnet.split(".")[2]) // 16
    host.pid = fleet.start_hosts(info.name, slot, [spec])[host.name]
    info.save()
