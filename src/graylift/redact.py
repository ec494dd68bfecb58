"""Keep secrets out of text that is shown, logged or stored: messages, journal entries, command output.

Two pure functions, applied where text leaves graylift's hands (an error message, a journal detail):

>>> mask_url("GET https://deploy:s3cret@repo.example/pyapp-1.0.tar.gz failed")
'GET https://***@repo.example/pyapp-1.0.tar.gz failed'
>>> redact("curl: (22) token s3cret refused", ["s3cret"])
'curl: (22) token *** refused'
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import urlsplit

MASK = "***"

# scheme://userinfo@ : the userinfo runs to the last '@' before the first '/' or whitespace, so an
# unescaped '@' or ':' inside a password is masked with the rest of it.
_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)[^/\s@]*(?:@[^/\s@]*)*@")


def mask_url(text: str) -> str:
    """``text`` with the userinfo (``user:password@``, ``token@``) of every URL in it replaced by ``***@``.

    Anything else is left as it is; a text without URLs comes back unchanged.
    """
    return _USERINFO.sub(lambda m: f"{m.group('scheme')}{MASK}@", text)


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every occurrence of each secret replaced by ``***``.

    Longer secrets are replaced first (a secret that contains another is hidden whole); empty
    secrets are ignored.
    """
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text


def has_userinfo(url: str) -> bool:
    """True when ``url`` carries a ``user[:password]@`` before its host."""
    try:
        return "@" in urlsplit(url).netloc
    except ValueError:
        return mask_url(url) != url


def has_password(url: str) -> bool:
    """True when ``url`` carries ``user:password@`` (a user name alone is no secret)."""
    try:
        return urlsplit(url).password is not None
    except ValueError:
        return has_userinfo(url)
