"""Service instances registered as etcd v3 keys, driven through etcd's HTTP/JSON gateway (/v3/...).

An instance is the key ``key_template`` (default ``/services/{service}/{address}:{port}``), usually
attached to a lease the app keeps alive. Two modes:

``remove`` (default): take_out moves the key, in ONE etcd transaction, to the parked key
``<parked_prefix><instance key>`` (a JSON record of the value, lease id and granted TTL) and deletes
the instance key. A crash between take_out and put_back therefore loses nothing: the saved value
lives in etcd. put_back restores the value (on the original lease when it is still alive) and
deletes the parked key, again in one transaction. If the app registered itself again meanwhile
(e.g. restarted with a new lease), put_back keeps that fresh registration and only drops the parked
copy. If the original lease expired and nobody re-registered, put_back raises TrafficError (the
parked value is kept) instead of resurrecting a registration for a process that may be gone.

``field``: the value is a JSON object; take_out sets ``status_field`` to ``out_value`` and put_back
to ``in_value``, in place, keeping the key's lease (``ignore_lease``), compare-and-set on the key's
mod_revision.

is_out/is_in read the keys back. ``propagation_seconds`` (consumers' watch/cache delay) is how long the
take-out step waits after it.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator

from graylift.adapters._preflight import every_host, listing
from graylift.adapters.registry import Backend, Build
from graylift.adapters.traffic._registry_base import HttpRegistrySwitch, HttpRegistryTraffic, token_login
from graylift.core.model import Host
from graylift.core.template import host_values, render
from graylift.errors import TrafficError
from graylift.ports import Preflight
from graylift.schema import (
    Port,
    Text,
    ZkPath,
    check_text,
    placeholders,
)

CAS_ATTEMPTS = 5
TXN_OPS = 64  # reads per preflight transaction (etcd's --max-txn-ops defaults to 128)


def _b64(text: str | bytes) -> str:
    return base64.b64encode(text.encode() if isinstance(text, str) else text).decode()


def _unb64(text: str) -> bytes:
    return base64.b64decode(text)


KEY_PLACEHOLDERS = frozenset({"service", "address", "host", "port"})


class EtcdTraffic(HttpRegistryTraffic):
    """Service instances as etcd v3 keys (HTTP/JSON gateway)."""

    type: Literal["etcd"] = "etcd"
    service: Text
    port: Port
    key_template: Annotated[str, BeforeValidator(check_text), placeholders(KEY_PLACEHOLDERS)] = (
        "/services/{service}/{address}:{port}")
    mode: Literal["remove", "field"] = "remove"
    parked_prefix: ZkPath = "/graylift/parked"
    status_field: Text = "status"
    out_value: Text = "down"
    in_value: Text = "up"


class EtcdSwitch(HttpRegistrySwitch):
    def __init__(self, cfg: EtcdTraffic, *, password: str | None = None) -> None:
        self.cfg = cfg
        self.parked_prefix = "/" + cfg.parked_prefix.strip("/")
        super().__init__(cfg, f"etcd:{self._key({'address': '*', 'host': '*'})}",
                         hint="is etcd running at {where} (v3 gateway)?")
        self.api.login = token_login(self.api, cfg, password, "/v3/auth/authenticate", key="token", user_field="name")

    @classmethod
    def from_config(cls, cfg: EtcdTraffic, build: Build) -> EtcdSwitch:
        return cls(cfg, password=build.secret(cfg.password_env, "password_env"))

    # ------------------------------------------------------------------ keys

    def _key(self, values: dict[str, str]) -> str:
        return render(self.cfg.key_template, {**values, "service": self.cfg.service, "port": str(self.cfg.port)})

    def instance_key(self, host: Host) -> str:
        return self._key(host_values(host))

    def parked_key(self, host: Host) -> str:
        return self.parked_prefix + "/" + self.instance_key(host).lstrip("/")

    # ------------------------------------------------------------------ TrafficSwitch

    async def take_out(self, host: Host) -> None:
        if self.cfg.mode == "field":
            await self._set_field(host, self.cfg.out_value)
        else:
            await self._park(host)
        if not await self.is_out(host):
            raise TrafficError(f"{self.name}: {self.instance_key(host)} still registered right after take-out; "
                               "does the app re-register itself periodically?")

    async def put_back(self, host: Host) -> None:
        if self.cfg.mode == "field":
            await self._set_field(host, self.cfg.in_value)
        else:
            await self._restore(host)

    async def is_out(self, host: Host) -> bool:
        kv = await self._get(self.instance_key(host))
        if self.cfg.mode == "field":
            return kv is not None and self._field(kv, host) == self.cfg.out_value
        return kv is None

    async def is_in(self, host: Host) -> bool:
        kv = await self._get(self.instance_key(host))
        if kv is None:
            return False
        return self.cfg.mode == "remove" or self._field(kv, host) == self.cfg.in_value

    async def in_flight(self, host: Host) -> int | None:
        return None  # a registry cannot see open calls

    async def close(self) -> None:
        return None  # one HTTP connection per call; a simple token just expires on the server

    async def parked(self, host: Host) -> dict[str, Any] | None:
        """The parked record for the host (remove mode), or None."""
        kv = await self._get(self.parked_key(host))
        return None if kv is None else self._record(kv, host)

    async def preflight(self, hosts: Sequence[Host]) -> Preflight:
        """Every host's instance key (and parked key) read in read-only transactions of TXN_OPS ranges."""
        keys = [self.instance_key(h) for h in hosts]
        if self.cfg.mode == "remove":
            keys += [self.parked_key(h) for h in hosts]
        try:
            found = await self._get_many(keys)
        except TrafficError as exc:
            return Preflight(problems=(every_host(self.name, exc),))
        problems, out = [], []
        for host in hosts:
            key, kv = self.instance_key(host), found.get(self.instance_key(host))
            if self.cfg.mode == "remove":
                if kv is None and self.parked_key(host) in found:
                    out.append(host.name)
                elif kv is None:
                    problems.append(f"{self.name}: {host.name}: no key {key} in etcd at {self.where} (and nothing "
                                    f"parked at {self.parked_key(host)}); is the host registered, and does "
                                    "key_template match?")
                continue
            if kv is None:
                problems.append(f"{self.name}: {host.name}: no key {key} in etcd at {self.where}; is the host "
                                "registered, and does key_template match?")
                continue
            try:
                if self._field(kv, host) == self.cfg.out_value:
                    out.append(host.name)
            except TrafficError as exc:
                problems.append(str(exc).replace(f"{self.name}: ", f"{self.name}: {host.name}: ", 1))
        notes = [f"{self.name}: {len(hosts) - len(problems) - len(out)} of {len(hosts)} hosts registered and in "
                 f"(mode {self.cfg.mode})"]
        notes += listing(self.name, "already out", out)
        return Preflight(tuple(problems), tuple(notes))

    # ------------------------------------------------------------------ remove mode

    async def _park(self, host: Host) -> None:
        key, parked = self.instance_key(host), self.parked_key(host)
        for _ in range(CAS_ATTEMPTS):
            kv = await self._get(key)
            if kv is None:
                if await self._get(parked) is not None:
                    return  # already parked
                raise TrafficError(f"{self.name}: no key {key} in etcd at {self.where} (and nothing parked at "
                                   f"{parked}); is {host.name} registered, and does key_template match?")
            lease = kv.get("lease")
            ttl = await self._granted_ttl(lease) if lease else None
            record = {"key": key, "value": kv.get("value", ""), "lease": lease, "ttl": ttl,
                      "parked_at": datetime.now(UTC).isoformat(timespec="seconds")}
            ok = await self._txn(
                [{"key": _b64(key), "target": "MOD", "result": "EQUAL", "mod_revision": kv["mod_revision"]}],
                [{"request_put": {"key": _b64(parked), "value": _b64(json.dumps(record))}},
                 {"request_delete_range": {"key": _b64(key)}}])
            if ok:
                return
        raise TrafficError(f"{self.name}: {key} kept changing while parking it ({CAS_ATTEMPTS} attempts); "
                           "is the app re-registering it in a loop?")

    async def _restore(self, host: Host) -> None:
        key, parked = self.instance_key(host), self.parked_key(host)
        for _ in range(CAS_ATTEMPTS):
            parked_kv = await self._get(parked)
            current = await self._get(key)
            if parked_kv is None:
                if current is not None:
                    return  # already back
                raise TrafficError(f"{self.name}: neither {key} nor a parked copy at {parked} exists in etcd at "
                                   f"{self.where}; nothing to put back for {host.name} (re-register the app)")
            parked_cmp = {"key": _b64(parked), "target": "MOD", "result": "EQUAL",
                          "mod_revision": parked_kv["mod_revision"]}
            drop_parked = {"request_delete_range": {"key": _b64(parked)}}
            if current is not None:  # the app registered itself again: keep its fresh registration
                ok = await self._txn([parked_cmp], [drop_parked])
            else:
                record = self._record(parked_kv, host)
                put: dict[str, Any] = {"key": _b64(key), "value": record.get("value", "")}
                lease = record.get("lease")
                if lease:
                    if await self._lease_remaining(lease) <= 0:
                        raise TrafficError(
                            f"{self.name}: lease {lease} of {key} expired while {host.name} was out and the app "
                            f"did not register again; the saved value stays at {parked}. Restart the app (it "
                            "registers itself) or restore the key by hand")
                    put["lease"] = lease
                absent = {"key": _b64(key), "target": "VERSION", "result": "EQUAL", "version": "0"}
                ok = await self._txn([parked_cmp, absent], [{"request_put": put}, drop_parked])
            if ok:
                return
        raise TrafficError(f"{self.name}: {key} or {parked} kept changing while restoring ({CAS_ATTEMPTS} attempts)")

    def _record(self, kv: dict[str, Any], host: Host) -> dict[str, Any]:
        try:
            record = json.loads(_unb64(kv.get("value", "")))
            if isinstance(record, dict):
                return record
        except ValueError:
            pass
        raise TrafficError(f"{self.name}: parked record {self.parked_key(host)} is not graylift JSON; "
                           "inspect it with etcdctl get")

    # ------------------------------------------------------------------ field mode

    def _value(self, kv: dict[str, Any], host: Host) -> dict[str, Any]:
        try:
            value = json.loads(_unb64(kv.get("value", "")))
        except ValueError:
            value = None
        if not isinstance(value, dict):
            raise TrafficError(f"{self.name}: value of {self.instance_key(host)} is not a JSON object, so mode "
                               f"'field' cannot set {self.cfg.status_field!r}; use mode 'remove'")
        return value

    def _field(self, kv: dict[str, Any], host: Host) -> Any:
        return self._value(kv, host).get(self.cfg.status_field)

    async def _set_field(self, host: Host, wanted: str) -> None:
        key = self.instance_key(host)
        for _ in range(CAS_ATTEMPTS):
            kv = await self._get(key)
            if kv is None:
                raise TrafficError(f"{self.name}: no key {key} in etcd at {self.where}; is {host.name} registered, "
                                   "and does key_template match?")
            value = self._value(kv, host)
            if value.get(self.cfg.status_field) == wanted:
                return
            value[self.cfg.status_field] = wanted
            put: dict[str, Any] = {"key": _b64(key), "value": _b64(json.dumps(value))}
            if kv.get("lease"):
                put["ignore_lease"] = True
            if await self._txn([{"key": _b64(key), "target": "MOD", "result": "EQUAL",
                                 "mod_revision": kv["mod_revision"]}], [{"request_put": put}]):
                return
        raise TrafficError(f"{self.name}: {key} kept changing while setting {self.cfg.status_field} ({CAS_ATTEMPTS} "
                           "attempts)")

    # ------------------------------------------------------------------ etcd calls

    async def _get(self, key: str) -> dict[str, Any] | None:
        answer = await self._post("/v3/kv/range", {"key": _b64(key)})
        kvs = answer.get("kvs") or []
        return kvs[0] if kvs else None

    async def _get_many(self, keys: Sequence[str]) -> dict[str, dict[str, Any]]:
        """{key: kv} of those ``keys`` that exist, read TXN_OPS at a time (a read-only txn writes nothing)."""
        found: dict[str, dict[str, Any]] = {}
        for start in range(0, len(keys), TXN_OPS):
            chunk = keys[start:start + TXN_OPS]
            answer = await self._post("/v3/kv/txn", {"compare": [], "success": [
                {"request_range": {"key": _b64(key)}} for key in chunk]})
            responses = answer.get("responses") or []
            if len(responses) != len(chunk):
                raise TrafficError(f"{self.name}: POST /v3/kv/txn answered {len(responses)} ranges for "
                                   f"{len(chunk)} reads")
            for key, response in zip(chunk, responses, strict=True):
                kvs = (response.get("response_range") or {}).get("kvs") or []
                if kvs:
                    found[key] = kvs[0]
        return found

    async def _txn(self, compare: list[dict[str, Any]], success: list[dict[str, Any]]) -> bool:
        answer = await self._post("/v3/kv/txn", {"compare": compare, "success": success})
        return bool(answer.get("succeeded"))

    async def _granted_ttl(self, lease: str) -> int | None:
        answer = await self._post("/v3/lease/timetolive", {"ID": lease})
        ttl = int(answer.get("grantedTTL", 0) or 0)
        return ttl or None

    async def _lease_remaining(self, lease: str) -> int:
        answer = await self._post("/v3/lease/timetolive", {"ID": lease})
        return int(answer.get("TTL", -1))

    async def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """One gateway call. A token etcd no longer knows (simple tokens expire after ``--auth-token-ttl``
        idle seconds) is dropped and the call retried once with a fresh one."""
        status, answer = await self.api.call_logged_in("POST", path, json=body, refusal=401,
                                                       with_token=lambda token: {"headers": {"Authorization": token}})
        if status == 401:
            raise self.api.fail(f"{self.name}: POST {path} was refused with HTTP 401 even with a fresh token "
                                f"({str(answer).strip()[:200]}); check the etcd user {self.cfg.username!r} and "
                                "its role")
        if not isinstance(answer, dict):
            raise TrafficError(f"{self.name}: POST {path} answered {answer!r:.200} instead of a JSON object")
        if "error" in answer or ("code" in answer and "header" not in answer):
            raise self.api.fail(f"{self.name}: POST {path} failed: {answer.get('message') or answer.get('error')}")
        return answer


BACKEND = Backend(EtcdTraffic, EtcdSwitch.from_config)
