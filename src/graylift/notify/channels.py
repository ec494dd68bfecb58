"""Messages per channel, with each channel's signing. Pure: the time is passed in.

    ========  ==========================================================================================
    channel   request
    ========  ==========================================================================================
    dingtalk  markdown message; with a secret, ``timestamp`` (ms) and ``sign`` query parameters:
              base64(HMAC-SHA256(key=secret, msg="{timestamp}\\n{secret}")), URL-encoded
    feishu    text message; with a secret, ``timestamp`` (s) and ``sign`` in the body:
              base64(HMAC-SHA256(key="{timestamp}\\n{secret}", msg=""))
    wecom     markdown message (the robot's key is in its URL; WeCom robots have no signing)
    slack     ``{"text": ...}`` (an incoming webhook's URL is its secret; it has no signing)
    generic   the event as JSON; with a secret, ``X-Graylift-Signature: sha256=HEX`` where
              HEX = HMAC-SHA256(key=secret, msg="{timestamp}.{body}") and ``X-Graylift-Timestamp``
    ========  ==========================================================================================

A channel's answer counts as delivered only when it says so (DingTalk and WeCom ``errcode`` 0, Feishu
``code`` 0, any 2xx for Slack and generic).

Templates use ``$name`` placeholders (:class:`string.Template`; no attribute access, unknown names left as
they are): $event $title $app $env $version $from_version $release_id $kind $state $message $by $url
$approvers $reason.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import string
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote_plus, urlsplit

from graylift.errors import GrayliftError

CHANNELS = ("dingtalk", "feishu", "wecom", "slack", "generic")
EVENTS = ("started", "canary_baking", "awaiting_promotion", "approval_requested", "approval_rejected",
          "batch_failed", "paused", "rolling_back", "succeeded", "rolled_back", "aborted", "failed")

TITLES = {
    "started": "release started", "canary_baking": "canary baking", "awaiting_promotion": "canary waits for promotion",
    "approval_requested": "approval needed", "approval_rejected": "release request rejected",
    "batch_failed": "batch failed", "paused": "release paused", "rolling_back": "rolling back",
    "succeeded": "release succeeded", "rolled_back": "rolled back", "aborted": "release aborted",
    "failed": "release failed",
}
DEFAULT_TEMPLATE = "graylift: $title: $app $from_version -> $version ($env), release #$release_id by $by. $message $url"
APPROVAL_TEMPLATE = ("graylift: approval needed: $app $version ($env), request #$release_id by $by ($reason); "
                     "approvers: $approvers. $url")


@dataclass(frozen=True)
class Outgoing:
    url: str
    headers: dict[str, str]
    body: bytes


def check_url(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise GrayliftError(f"a webhook URL must be http(s)://host/...; got {parts.scheme or 'no'} scheme")
    if parts.username or parts.password:
        raise GrayliftError("a webhook URL must not carry a user or password; use the channel's secret")


def text_of(payload: dict[str, Any], template: str | None) -> str:
    values = {k: "" if v is None else ", ".join(v) if isinstance(v, list) else str(v) for k, v in payload.items()}
    values.setdefault("title", TITLES.get(str(payload.get("event")), str(payload.get("event"))))
    default = APPROVAL_TEMPLATE if payload.get("event") == "approval_requested" else DEFAULT_TEMPLATE
    return " ".join(string.Template(template or default).safe_substitute(values).split())


def render(channel: str, url: str, secret: str | None, template: str | None, payload: dict[str, Any],
           now_ms: int) -> Outgoing:
    text = text_of(payload, template)
    title = TITLES.get(str(payload.get("event")), "graylift")
    headers = {"Content-Type": "application/json", "User-Agent": "graylift"}
    body: dict[str, Any]
    if channel == "dingtalk":
        body = {"msgtype": "markdown", "markdown": {"title": title, "text": text}}
        if secret:
            sign = base64.b64encode(hmac.new(secret.encode(), f"{now_ms}\n{secret}".encode(),
                                             hashlib.sha256).digest()).decode()
            url += ("&" if "?" in url else "?") + f"timestamp={now_ms}&sign={quote_plus(sign)}"
    elif channel == "feishu":
        body = {"msg_type": "text", "content": {"text": text}}
        if secret:
            seconds = now_ms // 1000
            sign = base64.b64encode(hmac.new(f"{seconds}\n{secret}".encode(), b"", hashlib.sha256).digest()).decode()
            body = {"timestamp": str(seconds), "sign": sign} | body
    elif channel == "wecom":
        body = {"msgtype": "markdown", "markdown": {"content": text}}
    elif channel == "slack":
        body = {"text": text}
    elif channel == "generic":
        body = {"text": text, **payload}
    else:
        raise GrayliftError(f"unknown channel {channel!r}; one of {', '.join(CHANNELS)}")
    data = json.dumps(body, sort_keys=True, default=str).encode()
    if channel == "generic":
        headers["X-Graylift-Event"] = str(payload.get("event"))
        if secret:
            ts = str(now_ms // 1000)
            digest = hmac.new(secret.encode(), ts.encode() + b"." + data, hashlib.sha256).hexdigest()
            headers |= {"X-Graylift-Timestamp": ts, "X-Graylift-Signature": f"sha256={digest}"}
    return Outgoing(url, headers, data)


def refusal(channel: str, status: int, body: bytes) -> str | None:
    """Why the channel did not take the message, or None if it did."""
    text = body[:300].decode(errors="replace")
    if not 200 <= status < 300:
        return f"HTTP {status}: {text}".strip()
    if channel in ("dingtalk", "wecom", "feishu"):
        try:
            answer = json.loads(body or b"{}")
        except ValueError:
            return f"not a JSON answer: {text}"
        code = answer.get("errcode", answer.get("code", answer.get("StatusCode", 0)))
        if code not in (0, "0", None):
            return f"{channel} error {code}: {answer.get('errmsg') or answer.get('msg') or text}"
    return None


def verify_generic(secret: str, timestamp: str, body: bytes, signature: str) -> bool:
    """What a receiver of the generic channel checks (documented in docs/api.md)."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(f"sha256={digest}", signature)
