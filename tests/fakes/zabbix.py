"""Fake Zabbix 7.0 JSON-RPC API at ``/api_jsonrpc.php`` (www.zabbix.com/documentation/7.0/en/manual/api).

``apiinfo.version`` needs no auth and answers "7.0.0". ``user.login`` takes ``username``/``password``
(``user`` is rejected, as since 6.4) and returns a session id; ``user.logout`` ends it. Other methods
need ``Authorization: Bearer <session or API token>`` (``auth`` in the body
is refused, as in 7.2). ``host.get`` filters on ``host``; ``maintenance.create`` needs a unique
``name``, ``active_since`` < ``active_till``, ``hosts`` ([{hostid}]) or ``groups``, and ``timeperiods``
whose one-time ``period`` is >= 300; ``maintenance.get`` filters on ``name`` and returns numbers as
strings; ``maintenance.delete`` takes a list of ids. Errors use JSON-RPC error objects.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any

from .base import FakeServer, Request, Response


class RpcError(Exception):
    def __init__(self, code: int, message: str, data: str) -> None:
        super().__init__(data)
        self.code, self.message, self.data = code, message, data


@dataclass
class FakeZabbix(FakeServer):
    username: str = "Admin"
    password: str = "zabbix"
    api_tokens: set[str] = field(default_factory=set)
    sessions: set[str] = field(default_factory=set)  # from user.login (also accepted as Bearer tokens)
    hosts: dict[str, str] = field(default_factory=dict)  # technical name -> hostid
    maintenances: dict[str, dict[str, Any]] = field(default_factory=dict)
    _next: int = 1

    def handle(self, request: Request) -> Response:
        if request.path != "/api_jsonrpc.php" or request.method != "POST":
            return Response(404, "", "text/html")
        if request.headers.get("content-type", "").split(";")[0] not in ("application/json-rpc", "application/json"):
            return Response(412, "", "text/plain")
        body = request.json()
        try:
            result = self._call(body.get("method"), body.get("params"), body, request.headers)
            return Response(200, {"jsonrpc": "2.0", "result": result, "id": body.get("id")})
        except RpcError as exc:
            return Response(200, {"jsonrpc": "2.0", "error": {"code": exc.code, "message": exc.message,
                                                               "data": exc.data}, "id": body.get("id")})

    def _call(self, method: str, params: Any, body: dict[str, Any], headers: dict[str, str]) -> Any:
        if "auth" in body:
            raise RpcError(-32600, "Invalid request.", 'Invalid parameter "/": unexpected parameter "auth".')
        if method == "apiinfo.version":
            return "7.0.0"
        if method == "user.login":
            if "user" in params:
                raise RpcError(-32602, "Invalid params.", 'Invalid parameter "/": unexpected parameter "user".')
            if (params.get("username"), params.get("password")) != (self.username, self.password):
                raise RpcError(-32500, "Application error.", "Incorrect user name or password or account is "
                               "temporarily blocked.")
            session = secrets.token_hex(16)
            self.sessions.add(session)
            return session
        auth = headers.get("authorization", "")
        if not auth.startswith("Bearer ") or auth[7:] not in self.api_tokens | self.sessions:
            raise RpcError(-32602, "Invalid params.", "Not authorized.")
        if method == "user.logout":
            if auth[7:] not in self.sessions:
                raise RpcError(-32602, "Invalid params.", "Not authorized.")
            self.sessions.discard(auth[7:])
            return True
        if method == "host.get":
            wanted = params.get("filter", {}).get("host", [])
            return [{"hostid": hid, "host": name} for name, hid in self.hosts.items() if name in wanted]
        if method == "maintenance.create":
            return {"maintenanceids": [self._create(params)]}
        if method == "maintenance.get":
            names = params.get("filter", {}).get("name")
            return [dict(m) for m in self.maintenances.values() if names is None or m["name"] in names]
        if method == "maintenance.delete":
            for mid in params:
                if mid not in self.maintenances:
                    raise RpcError(-32500, "Application error.", "No permissions to referred object or it does "
                                   "not exist!")
            for mid in params:
                del self.maintenances[mid]
            return {"maintenanceids": params}
        raise RpcError(-32601, "Method not found.", f'Incorrect API "{method}".')

    def _create(self, p: dict[str, Any]) -> str:
        unexpected = set(p) - {"name", "active_since", "active_till", "maintenance_type", "description",
                               "timeperiods", "hosts", "groups", "tags", "tags_evaltype"}
        if unexpected:
            raise RpcError(-32602, "Invalid params.", f'Invalid parameter "/1": unexpected parameter '
                           f'"{sorted(unexpected)[0]}".')
        if any(m["name"] == p.get("name") for m in self.maintenances.values()):
            raise RpcError(-32602, "Invalid params.", f'Maintenance "{p.get("name")}" already exists.')
        if not p.get("hosts") and not p.get("groups"):
            raise RpcError(-32602, "Invalid params.", "At least one host group or host must be selected.")
        if any(set(h) != {"hostid"} or h["hostid"] not in self.hosts.values() for h in p.get("hosts", [])):
            raise RpcError(-32602, "Invalid params.", 'Invalid parameter "/1/hosts/1": unexpected host.')
        if int(p["active_till"]) <= int(p["active_since"]):
            raise RpcError(-32602, "Invalid params.", "Maintenance \"active_since\" value cannot be bigger than "
                           "\"active_till\".")
        periods = p.get("timeperiods") or []
        if not periods or any(int(t.get("period", 0)) < 300 for t in periods):
            raise RpcError(-32602, "Invalid params.", 'Invalid parameter "/1/timeperiods/1/period": value must '
                           'be one of 300-2147464800.')
        mid = str(self._next)
        self._next += 1
        self.maintenances[mid] = {"maintenanceid": mid, "name": p["name"], "maintenance_type": "0",
                                  "active_since": str(p["active_since"]), "active_till": str(p["active_till"]),
                                  "hosts": [{"hostid": h["hostid"]} for h in p.get("hosts", [])],
                                  "timeperiods": periods}
        return mid
