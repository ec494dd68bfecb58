"""mask_url and redact, from tables."""

from __future__ import annotations

import doctest

import pytest

import graylift.redact
from graylift.redact import mask_url, redact

MASK_URL_CASES = [
    # (id, text, expected)
    ("user-password", "https://deploy:s3cret@repo.example/a.tar.gz", "https://***@repo.example/a.tar.gz"),
    ("token-as-user", "http://ghp_abc123@repo.example:8081/x", "http://***@repo.example:8081/x"),
    ("empty-password", "http://deploy:@repo/x", "http://***@repo/x"),
    ("at-in-password", "https://u:p@ss@repo.example/x", "https://***@repo.example/x"),
    ("colon-and-slashless", "http://u:pw@host", "http://***@host"),
    ("percent-encoded", "https://u%40corp:p%2Fw@host/x", "https://***@host/x"),
    ("sqlalchemy-scheme", "postgresql+psycopg://graylift:pw@db/graylift", "postgresql+psycopg://***@db/graylift"),
    ("in-a-sentence", "curl: (6) Could not resolve http://a:b@nohost/x, retrying",
     "curl: (6) Could not resolve http://***@nohost/x, retrying"),
    ("two-urls", "GET http://a:b@h1/x then 'https://c:d@h2/y'", "GET http://***@h1/x then 'https://***@h2/y'"),
    ("no-userinfo", "http://repo.example/a@1.0/x.tar.gz", "http://repo.example/a@1.0/x.tar.gz"),
    ("email-is-not-a-url", "mail ops@example.com about http://repo/x", "mail ops@example.com about http://repo/x"),
    ("no-url", "nothing to hide here", "nothing to hide here"),
    ("empty", "", ""),
    ("multiline", "line one http://u:p@h/x\nline two https://v:q@h/y",
     "line one http://***@h/x\nline two https://***@h/y"),
]


@pytest.mark.parametrize(("text", "expected"), [c[1:] for c in MASK_URL_CASES], ids=[c[0] for c in MASK_URL_CASES])
def test_mask_url(text: str, expected: str) -> None:
    assert mask_url(text) == expected
    assert mask_url(expected) == expected  # masking twice changes nothing


REDACT_CASES = [
    # (id, text, secrets, expected)
    ("one", "Authorization: Bearer tok-123", ["tok-123"], "Authorization: Bearer ***"),
    ("every-occurrence", "pw pw pw", ["pw"], "*** *** ***"),
    ("several", "user=alice pass=hunter2 token=abc", ["hunter2", "abc"], "user=alice pass=*** token=***"),
    ("longest-first", "secret-long", ["secret", "secret-long"], "***"),
    ("empty-secret-ignored", "keep me", ["", "absent"], "keep me"),
    ("no-secrets", "keep me", [], "keep me"),
    ("special-characters", 'user = "deploy:p\\"w$1"', ['p\\"w$1'], 'user = "deploy:***"'),
    ("generator", "a1 b2", (s for s in ["a1", "b2"]), "*** ***"),
]


@pytest.mark.parametrize(("text", "secrets", "expected"), [c[1:] for c in REDACT_CASES],
                         ids=[c[0] for c in REDACT_CASES])
def test_redact(text: str, secrets: list[str], expected: str) -> None:
    assert redact(text, secrets) == expected


def test_module_docstring_examples() -> None:
    result = doctest.testmod(graylift.redact)
    assert result.attempted >= 2 and result.failed == 0
