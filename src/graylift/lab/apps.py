"""The lab's sample apps, built at ``lab up`` into ``<artifact_dir>/{app}/{version}/{app}-{version}.{ext}``.

- ``pyapp`` (tar.gz): a Python web app with ``bin/start`` / ``bin/stop`` at the archive's top level.
  1.0.0, 1.1.0 and 2.0.0 are good, 3.0.0 answers /health with 500, 4.0.0's ``bin/start`` never returns;
  for the canary analysis, 5.0.0 answers 2% of requests with 500 and 6.0.0 is 30% slower (both healthy).
- ``shop`` (war): a jakarta.servlet app compiled with javac for Tomcat 10. 3.0.0 answers /health with 500.

Every package gets a ``.sha256`` file next to it (hex digest, two spaces, file name).
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import subprocess
import tarfile
import tempfile
import zipfile
from importlib import resources
from pathlib import Path

from graylift.errors import GrayliftError

PYAPP_VERSIONS = {"1.0.0": "good", "1.1.0": "good", "2.0.0": "good", "3.0.0": "broken-health",
                  "4.0.0": "hung-start", "5.0.0": "errors-2pct", "6.0.0": "slower-30pct"}
FAULTS = {"errors-2pct": {"error_rate": 0.02}, "slower-30pct": {"slowdown": 1.3}}  # pyapp.json's injected faults
SHOP_VERSIONS = {"1.0.0": "good", "2.0.0": "good", "3.0.0": "broken-health"}
SERVLET_API = Path("/usr/share/tomcat10/lib/servlet-api.jar")
APPS = ("pyapp", "shop")


def asset(*parts: str) -> bytes:
    return resources.files("graylift.lab").joinpath("assets", *parts).read_bytes()


def write_with_sha256(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    digest = hashlib.sha256(data).hexdigest()
    path.with_name(path.name + ".sha256").write_text(f"{digest}  {path.name}\n")


def _add(tar: tarfile.TarFile, name: str, data: bytes, mode: int) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), mode, 1_700_000_000
    tar.addfile(info, io.BytesIO(data))


def pyapp_package(version: str, behaviour: str) -> bytes:
    start = asset("pyapp", "bin", "start-hangs" if behaviour == "hung-start" else "start")
    meta = {"app": "pyapp", "version": version, "healthy": behaviour != "broken-health", **FAULTS.get(behaviour, {})}
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        _add(tar, "pyapp-server.py", asset("pyapp", "pyapp-server.py"), 0o644)
        _add(tar, "pyapp.json", json.dumps(meta).encode() + b"\n", 0o644)
        _add(tar, "bin/start", start, 0o755)
        _add(tar, "bin/stop", asset("pyapp", "bin", "stop"), 0o755)
    return buffer.getvalue()


def build_pyapp(artifact_dir: Path) -> None:
    for version, behaviour in PYAPP_VERSIONS.items():
        write_with_sha256(artifact_dir / "pyapp" / version / f"pyapp-{version}.tar.gz",
                          pyapp_package(version, behaviour))


def compile_shop(classes: Path) -> None:
    if not SERVLET_API.exists():
        raise GrayliftError(f"{SERVLET_API} is missing: apt-get install tomcat10 (the shop app needs it)")
    javac = shutil.which("javac")
    if javac is None:
        raise GrayliftError("javac is not installed: apt-get install default-jdk-headless (shop needs it)")
    source = classes.parent / "ShopServlet.java"
    source.write_bytes(asset("shop", "ShopServlet.java"))
    done = subprocess.run([javac, "-nowarn", "--release", "17", "-cp", str(SERVLET_API), "-d", str(classes),
                           str(source)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise GrayliftError(f"javac failed on the shop app:\n{done.stderr.strip()}")


def shop_war(classes: Path, version: str, behaviour: str) -> bytes:
    web_xml = (asset("shop", "web.xml").decode().replace("@VERSION@", version)
               .replace("@HEALTHY@", "false" if behaviour == "broken-health" else "true"))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as war:
        war.writestr("META-INF/MANIFEST.MF", "Manifest-Version: 1.0\r\nCreated-By: graylift lab\r\n\r\n")
        war.writestr("WEB-INF/web.xml", web_xml)
        for path in sorted(classes.rglob("*.class")):
            war.write(path, "WEB-INF/classes/" + path.relative_to(classes).as_posix())
    return buffer.getvalue()


def build_shop(artifact_dir: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="graylift-shop-") as tmp:
        classes = Path(tmp) / "classes"
        classes.mkdir()
        compile_shop(classes)
        for version, behaviour in SHOP_VERSIONS.items():
            write_with_sha256(artifact_dir / "shop" / version / f"shop-{version}.war",
                              shop_war(classes, version, behaviour))


def build_apps(artifact_dir: Path, apps: tuple[str, ...]) -> None:
    if "pyapp" in apps:
        build_pyapp(artifact_dir)
    if "shop" in apps:
        build_shop(artifact_dir)


def install_tomcat_base(srv: Path, port: int) -> Path:
    """Lay out ``<srv>/shop/tomcat`` (CATALINA_BASE) and ``<srv>/shop/bin/tomcat-start|stop``.

    ``srv`` is the host's directory that is mounted over ``/srv`` inside the host.
    """
    base, bin_dir = srv / "shop" / "tomcat", srv / "shop" / "bin"
    for sub in ("conf", "logs", "temp", "webapps", "work", "lib"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    bin_dir.mkdir(parents=True, exist_ok=True)
    server_xml = asset("tomcat", "server.xml").decode().replace("@PORT@", str(port))
    (base / "conf" / "server.xml").write_text(server_xml)
    (base / "conf" / "web.xml").write_bytes(asset("tomcat", "web.xml"))
    properties = Path("/usr/share/tomcat10/etc/catalina.properties").read_text()
    (base / "conf" / "catalina.properties").write_text(
        properties + "\n# graylift lab: fast start, no TLD / jar scanning\n"
        "tomcat.util.scan.StandardJarScanFilter.jarsToSkip=*\n"
        "tomcat.util.scan.StandardJarScanFilter.jarsToScan=\n")
    shutil.copy("/usr/share/tomcat10/etc/logging.properties", base / "conf" / "logging.properties")
    tomcat_env = asset("tomcat", "tomcat-env").decode().replace("@BASE@", "/srv/shop/tomcat")
    (bin_dir / "tomcat-env").write_text(tomcat_env)
    for script in ("tomcat-start", "tomcat-stop"):
        (bin_dir / script).write_bytes(asset("tomcat", script))
        (bin_dir / script).chmod(0o755)
    return base
