"""CPU per request of graylift's HTTP client against a real Alertmanager: the same silence requests a release
sends (POST a silence, GET the host's silences, DELETE the silence), through

- ``reference``: a bare HTTP/1.1 request written and read on one asyncio stream (no HTTP library): the floor,
- ``aiohttp``: aiohttp's own ClientSession (the library under the new transport, without httpx's client),
- ``httpx+aiohttp``: an ``httpx.AsyncClient`` over ``aiohttp_transport.py`` (beside this file; it was
  ``graylift/adapters/_aiohttp.py`` under ``_http.new_client`` while measured, and was not landed),
- ``httpx``: ``graylift.adapters._http.new_client``: httpx's own transport (httpcore, anyio, h11).

One process per client and round, the rounds interleaved; each process times ``N`` requests of each kind on one
kept-alive connection, after one warm-up request, with ``resource.getrusage`` (user + system, this process).

    .venv/bin/pip install 'aiohttp>=3.10'        # not one of graylift's dependencies
    .venv/bin/python bench/results/http-transport-ab/per_request.py [ROUNDS] [N]   # figures to per_request.json
"""

from __future__ import annotations

import asyncio
import json
import resource
import subprocess
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
CLIENTS = ("reference", "aiohttp", "httpx+aiohttp", "httpx")


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def silence(host: str) -> dict[str, Any]:
    now = datetime.now(UTC)
    return {"matchers": [{"name": "instance", "value": host, "isRegex": False, "isEqual": True}],
            "startsAt": now.isoformat(), "endsAt": (now + timedelta(minutes=5)).isoformat(),
            "createdBy": "graylift-bench", "comment": "bench"}


async def bare(port: int, n: int) -> dict[str, float]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)

    async def request(method: str, path: str, body: Any = None) -> Any:
        data = json.dumps(body).encode() if body is not None else b""
        writer.write(f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
                     f"Content-Length: {len(data)}\r\n\r\n".encode() + data)
        head = await reader.readuntil(b"\r\n\r\n")
        headers = dict(line.split(b": ", 1) for line in head.split(b"\r\n")[1:] if b": " in line)
        if headers.get(b"Transfer-Encoding") == b"chunked":
            out = b""
            while size := int((await reader.readuntil(b"\r\n")).strip(), 16):
                out += (await reader.readexactly(size + 2))[:-2]
            await reader.readexactly(2)
        else:
            out = await reader.readexactly(int(headers.get(b"Content-Length", b"0")))
        return json.loads(out) if out else None

    return await timed(n, lambda b: request("POST", "/api/v2/silences", b),
                       lambda q: request("GET", "/api/v2/silences?filter=" + q),
                       lambda i: request("DELETE", f"/api/v2/silence/{i}"))


async def with_aiohttp(port: int, n: int) -> dict[str, float]:
    import aiohttp

    async with aiohttp.ClientSession(f"http://127.0.0.1:{port}") as session:
        async def post(body: Any) -> Any:
            async with session.post("/api/v2/silences", json=body) as r:
                return await r.json()

        async def get(query: str) -> Any:
            async with session.get("/api/v2/silences?filter=" + query) as r:
                return await r.json()

        async def delete(sid: str) -> None:
            async with session.delete(f"/api/v2/silence/{sid}") as r:
                await r.read()

        return await timed(n, post, get, delete)


async def with_httpx(port: int, n: int, client: Any) -> dict[str, float]:
    async with client:
        base = f"http://127.0.0.1:{port}"

        async def post(body: Any) -> Any:
            return (await client.post(base + "/api/v2/silences", json=body)).json()

        async def get(query: str) -> Any:
            return (await client.get(base + "/api/v2/silences?filter=" + query)).json()

        async def delete(sid: str) -> None:
            (await client.delete(f"{base}/api/v2/silence/{sid}")).read()

        return await timed(n, post, get, delete)


async def timed(n: int, post: Any, get: Any, delete: Any) -> dict[str, float]:
    """``n`` hosts' silences made, read (each host's own: one silence in the answer) and expired."""
    tag = f"{id(post):x}"
    await get("instance%3D%22warm%22")
    hosts = [f"bench-{tag}-{i}" for i in range(n)]
    t0 = cpu()
    ids = [(await post(silence(h)))["silenceID"] for h in hosts]
    t1 = cpu()
    for h in hosts:
        assert len(await get(f"instance%3D%22{h}%22")) == 1
    t2 = cpu()
    for sid in ids:
        await delete(sid)
    t3 = cpu()
    return {"post_ms": (t1 - t0) / n * 1e3, "get_ms": (t2 - t1) / n * 1e3, "delete_ms": (t3 - t2) / n * 1e3}


def child(kind: str, port: int, n: int) -> None:
    import httpx

    from graylift.adapters._http import new_client, tls_context

    if kind == "reference":
        figures = asyncio.run(bare(port, n))
    elif kind == "aiohttp":
        figures = asyncio.run(with_aiohttp(port, n))
    elif kind == "httpx+aiohttp":
        sys.path.insert(0, str(HERE))
        from aiohttp_transport import AiohttpTransport  # beside this file: not part of graylift

        client = httpx.AsyncClient(transport=AiohttpTransport(tls_context), trust_env=False, timeout=10)
        figures = asyncio.run(with_httpx(port, n, client))
    else:
        figures = asyncio.run(with_httpx(port, n, new_client(timeout=10)))
    print(json.dumps(figures))


def main() -> None:
    from graylift.lab import services

    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 300
    runs: dict[str, list[dict[str, float]]] = {k: [] for k in CLIENTS}
    with tempfile.TemporaryDirectory() as tmp:
        port = services.free_port()
        am = services.start_alertmanager(Path(tmp), port)
        try:
            for r in range(rounds):
                for kind in CLIENTS if r % 2 == 0 else reversed(CLIENTS):
                    out = subprocess.run([sys.executable, __file__, "--child", kind, str(port), str(n)],
                                         capture_output=True, text=True, check=True).stdout
                    runs[kind].append(json.loads(out))
        finally:
            services.stop_service(am)
    summary = {}
    for kind, figures in runs.items():
        per_host = [f["post_ms"] + f["get_ms"] + f["delete_ms"] for f in figures]
        summary[kind] = {"runs": figures, "three_requests_ms": [round(x, 3) for x in per_host]}
    ref = summary["reference"]["three_requests_ms"]
    for kind in CLIENTS:
        summary[kind]["x_reference"] = [round(x / r, 2) for x, r in zip(summary[kind]["three_requests_ms"], ref,
                                                                         strict=True)]
    result = {"bench": "http-transport per request", "date": datetime.now(UTC).isoformat(timespec="seconds"),
              "requests_each": n, "rounds": rounds, "clients": summary}
    (HERE / "per_request.json").write_text(json.dumps(result, indent=1) + "\n")
    for kind in CLIENTS:
        print(f"{kind:10} POST+GET+DELETE ms: {summary[kind]['three_requests_ms']}  x reference: "
              f"{summary[kind]['x_reference']}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    else:
        main()
