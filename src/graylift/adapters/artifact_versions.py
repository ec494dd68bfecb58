"""The versions an HTTP artifact repository lists for an app (the console's "new release" form).

``versions_url`` (a template with ``{app}`` and ``{ext}``) names one page; what it answers decides how it
is read, so the common repositories need no plugin:

* ``maven-metadata.xml`` (any Maven repository: Nexus, Artifactory, Reposilite, a plain directory):
  its ``<version>`` elements;
* JSON: a list of strings; Nexus's search API (``/service/rest/v1/search?...``: ``items[].version``);
  Artifactory's folder info (``/api/storage/REPO/PATH``: ``children[].uri``);
* HTML, a directory index (nginx ``autoindex``, Apache, ``python -m http.server``, Nexus's browse pages):
  each link named ``APP-VERSION.EXT`` or a folder whose name is a version.

Every listed name must be a plain name with a digit in it (what ``check_version`` accepts); anything else on
the page is ignored. The
result is newest first by a natural order (``1.10.0`` after ``1.9.2``).
"""

from __future__ import annotations

import asyncio
import json
import re
from html.parser import HTMLParser
from typing import Any
from xml.etree import ElementTree

import httpx

from graylift.adapters._http import new_client
from graylift.adapters.artifacts import ArtifactAuth
from graylift.core.model import is_plain_name
from graylift.deadline import bounded, whole_request
from graylift.errors import ArtifactError

LIMIT = 200


def natural_key(version: str) -> tuple[tuple[int, int | str], ...]:
    """``1.10.0`` > ``1.9.2``; digits compare as numbers, words as text (numbers sort after words)."""
    return tuple((1, int(part)) if part.isdigit() else (0, part)
                 for part in re.findall(r"\d+|[A-Za-z]+", version))


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self.hrefs += [value for name, value in attrs if name == "href" and value]


def _from_json(data: Any) -> list[str]:
    if isinstance(data, list):
        return [v for v in data if isinstance(v, str)]
    if isinstance(data, dict) and isinstance(data.get("items"), list):  # Nexus search
        return [i["version"] for i in data["items"] if isinstance(i, dict) and isinstance(i.get("version"), str)]
    if isinstance(data, dict) and isinstance(data.get("children"), list):  # Artifactory folder info
        return [c["uri"].strip("/") for c in data["children"]
                if isinstance(c, dict) and isinstance(c.get("uri"), str) and c.get("folder", True)]
    return []


def _from_html(body: str, app: str, ext: str) -> list[str]:
    parser = _Links()
    parser.feed(body)
    named = re.compile(rf"{re.escape(app)}-(.+)\.{re.escape(ext)}")
    found = []
    for href in parser.hrefs:
        name = href.split("?")[0].rstrip("/").rsplit("/", 1)[-1]
        match = named.fullmatch(name)
        if match:
            found.append(match.group(1))
        elif href.split("?")[0].endswith("/"):
            found.append(name)  # a folder per version
    return found


def parse_listing(body: str, content_type: str, app: str, ext: str) -> list[str]:
    """The versions a listing page names, newest first, each once; a page it cannot read names none."""
    text = body.lstrip()
    if "xml" in content_type or text.startswith("<?xml") or text.startswith("<metadata"):
        try:
            root = ElementTree.fromstring(text)
        except ElementTree.ParseError:
            return []
        found = [v.text.strip() for v in root.iter("version") if v.text]
    elif "json" in content_type or text[:1] in ("[", "{"):
        try:
            found = _from_json(json.loads(text))
        except ValueError:
            return []
    else:
        found = _from_html(body, app, ext)
    versions = {v for v in found if is_plain_name(v) and re.search(r"\d", v)}  # a version has a digit
    return sorted(versions, key=natural_key, reverse=True)[:LIMIT]


def list_versions(url: str, app: str, ext: str, auth: ArtifactAuth | None, timeout: float = 10) -> list[str]:
    """GET the listing page and read it; an unreachable or failing page, or one not answered in full within
    ``timeout`` seconds, is an ArtifactError naming the URL. (The server's sync handlers call this from their
    worker threads, which run no event loop: the request gets one of its own.)"""
    try:
        response = asyncio.run(_get(url, auth, timeout))
    except httpx.HTTPError as exc:
        raise ArtifactError(f"listing versions of {app}: {url} unreachable: {type(exc).__name__}") from None
    except TimeoutError:
        raise ArtifactError(f"listing versions of {app}: {url} gave no complete answer in "
                            f"{whole_request(timeout):g}s") from None
    if response.status_code != 200:
        raise ArtifactError(f"listing versions of {app}: {url} answered HTTP {response.status_code}")
    return parse_listing(response.text, response.headers.get("content-type", ""), app, ext)


async def _get(url: str, auth: ArtifactAuth | None, timeout: float) -> httpx.Response:
    async with new_client(timeout=timeout, auth=auth.httpx_auth() if auth else None,
                          follow_redirects=True) as client:
        return await bounded(client.get(url), timeout)
