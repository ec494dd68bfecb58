"""Templates with ``{placeholder}`` fields: the one renderer of graylift, and the checks the config runs at load.

A template is text with ``{name}`` placeholders; ``{{`` and ``}}`` are literal braces. A placeholder is a
plain name: no ``!r`` conversion, no ``:spec`` format. Each kind of template allows its own names (a command
knows ``{version}``, an etcd key ``{service}``): the config refuses an unknown one when it loads
(:func:`problem`), so a template that loaded always renders (:func:`render`).

In a shell template (``quote=True``) every value is quoted with ``shlex.quote``, so a placeholder must stand
outside quotes: ``'{host}'`` would put the quotes inside quotes, and is refused at load.

>>> render("ctl disable {address}:{port}", {"address": "10.0.0.5", "port": "8080"})
'ctl disable 10.0.0.5:8080'
>>> render("ctl disable {host}", {"host": "web 1; rm -rf /"}, quote=True)
"ctl disable 'web 1; rm -rf /'"
>>> print(problem("ctl disable '{host}'", frozenset({"host"}), shell=True))
placeholder {host} is inside ' quotes; graylift shell-quotes every value itself, so write it without quotes
>>> problem("{hots}", frozenset({"host", "address"}))
'unknown placeholder {hots}; known placeholders: {address} {host}'
"""

from __future__ import annotations

import shlex
import string
from collections.abc import Collection, Mapping

from graylift.core.model import Host
from graylift.errors import ConfigError

Piece = tuple[str, str | None]  # (literal text, the placeholder after it or None)
HOST_PLACEHOLDERS = frozenset({"host", "address"})


def host_values(host: Host) -> dict[str, str]:
    """The values every per-host template knows: ``{host}`` (the name) and ``{address}``."""
    return {"host": host.name, "address": host.address}


def parse(template: str) -> list[Piece]:
    """The template as (literal, placeholder-or-None) pieces. Raises ValueError saying what is wrong."""
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ValueError(f"is not a valid template ({exc}; write {{{{ and }}}} for literal braces)") from None
    pieces: list[Piece] = []
    for literal, name, spec, conversion in parsed:
        if name is not None and (spec or conversion):
            raise ValueError(f"placeholder {{{name}}} must be plain: no '!' conversion or ':' format")
        pieces.append((literal, name))
    return pieces


def names(template: str) -> set[str]:
    """The placeholders the template uses (ValueError when it is malformed)."""
    return {name for _, name in parse(template) if name is not None}


def problem(template: str, allowed: Collection[str], *, shell: bool = False) -> str | None:
    """Why the template is wrong (malformed, an unknown placeholder, a placeholder inside shell quotes), or None."""
    try:
        pieces = parse(template)
    except ValueError as exc:
        return str(exc)
    quote: str | None = None
    for literal, name in pieces:
        if shell:
            quote = _quote_after(literal, quote)
        if name is None:
            continue
        if name not in allowed:
            known = " ".join(f"{{{p}}}" for p in sorted(allowed))
            return f"unknown placeholder {{{name}}}; known placeholders: {known}"
        if shell and quote:
            return (f"placeholder {{{name}}} is inside {quote} quotes; graylift shell-quotes every value "
                    f"itself, so write it without quotes")
    return None


def render(template: str, values: Mapping[str, str], *, allowed: Collection[str] | None = None,
           quote: bool = False) -> str:
    """The template with every placeholder replaced by its value (shell-quoted when ``quote``).

    ``allowed`` defaults to the names of ``values``. A malformed template, an unknown placeholder or one
    without a value is a ConfigError naming the template (the config refuses those at load).
    """
    known = values.keys() if allowed is None else allowed
    found = problem(template, known)
    if found:
        raise ConfigError(f"template {template!r} {found}" if found.startswith("is ")
                          else f"template {template!r}: {found}")
    out: list[str] = []
    for literal, name in parse(template):
        out.append(literal)
        if name is not None:
            if name not in values:
                raise ConfigError(f"template {template!r}: no value for placeholder {{{name}}}")
            out.append(shlex.quote(values[name]) if quote else values[name])
    return "".join(out)


def _quote_after(text: str, quote: str | None) -> str | None:
    """The shell quote (' or ") still open after reading ``text`` with ``quote`` open at its start."""
    escaped = False
    for char in text:
        if escaped:
            escaped = False
        elif quote == "'":
            if char == "'":
                quote = None
        elif char == "\\":
            escaped = True
        elif quote == '"':
            if char == '"':
                quote = None
        elif char in "'\"":
            quote = char
    return quote
