"""Where an app's packages come from: named repositories, the app's ``package``, and the two resolved.

A package names a ``repository`` (a URL template the hosts download from, or a local dir graylift uploads
from) or gives its own ``url`` / ``local_dir``. Credentials are names only (``password_env``,
``token_env``): the secrets are read from the environment when the artifact store is built
(:func:`graylift.adapters.artifacts.store_from_config`), so these models can be stored with a release.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from graylift.core.model import PackageKind
from graylift.schema import (
    EnvName,
    Flag,
    LocalPath,
    PlainName,
    UserPassword,
    check_text,
    exactly_one,
    fail,
    no_userinfo,
    placeholders,
    show,
)

PACKAGE_URL_PLACEHOLDERS = frozenset({"app", "version", "ext"})
SHA256_URL_PLACEHOLDERS = PACKAGE_URL_PLACEHOLDERS | {"url"}
PackageUrlTemplate = Annotated[str, BeforeValidator(check_text), AfterValidator(no_userinfo),
                               placeholders(PACKAGE_URL_PLACEHOLDERS)]
Sha256UrlTemplate = Annotated[str, BeforeValidator(check_text), AfterValidator(no_userinfo),
                              placeholders(SHA256_URL_PLACEHOLDERS)]
VersionsUrlTemplate = Annotated[str, BeforeValidator(check_text), AfterValidator(no_userinfo),
                                placeholders(frozenset({"app", "ext"}))]


def _check_basic_username(value: str) -> str:
    if ":" in value:
        raise fail("username", "must not contain ':' (HTTP basic auth puts one between user and password)", value)
    return value


BasicUsername = Annotated[str, BeforeValidator(check_text), AfterValidator(_check_basic_username)]
LOCAL_DIR_NEEDS_NO_CREDENTIALS = ("username, password_env and token_env are for a url repository (hosts "
                                  "download with them); a local_dir is read by graylift itself")


class _RepositoryAccess(UserPassword):
    """Credentials of a url repository or package: ``username`` + ``password_env`` (HTTP basic auth) or
    ``token_env`` (``Authorization: Bearer``), at most one. The secrets stay in the environment."""

    if TYPE_CHECKING:  # each subclass declares them where they belong in its own list of keys
        token_env: str | None
        local_dir: Path | None

    @property
    def has_credentials(self) -> bool:
        return self.username is not None or self.token_env is not None

    @model_validator(mode="after")
    def _one_scheme(self) -> _RepositoryAccess:
        if self.username is not None and self.token_env is not None:
            raise ValueError("give username + password_env (basic auth) or token_env (a bearer token), not both")
        if self.has_credentials and self.local_dir is not None:
            raise ValueError(LOCAL_DIR_NEEDS_NO_CREDENTIALS)
        return self


class RepositoryConfig(_RepositoryAccess):
    """A named artifact repository: a URL template (hosts download) or a local dir (graylift uploads)."""

    url: PackageUrlTemplate | None = None
    sha256_url: Sha256UrlTemplate | None = None
    local_dir: LocalPath | None = None
    versions_url: VersionsUrlTemplate | None = None  # where the console lists versions: see docs/config.md
    username: BasicUsername | None = None
    password_env: EnvName | None = None
    token_env: EnvName | None = None
    rebuilt_versions: Flag = False  # a version may be rebuilt (same version, new sha256): see docs/config.md

    @model_validator(mode="after")
    def _one_source(self) -> RepositoryConfig:
        exactly_one("give exactly one of url (hosts download) or local_dir (graylift uploads)", self.url,
                    self.local_dir)
        if self.sha256_url is not None and self.url is None:
            raise ValueError("sha256_url needs url")
        if self.url is not None and self.sha256_url is None:
            raise ValueError('a url repository needs sha256_url (e.g. "{url}.sha256") so hosts can verify '
                             "the package")
        if self.versions_url is not None and self.url is None:
            raise ValueError("versions_url needs url (a local_dir is listed by graylift itself)")
        return self


def _check_sha256(value: str) -> str:
    if not re.fullmatch(r"[0-9a-fA-F]{64}", value):
        raise fail("sha256", "must be 64 hex digits", value)
    return value.lower()


class PackageConfig(_RepositoryAccess):
    """Where an app's packages come from; credentials given here replace the repository's."""

    type: PackageKind
    repository: PlainName | None = None
    url: PackageUrlTemplate | None = None
    sha256_url: Sha256UrlTemplate | None = None
    local_dir: LocalPath | None = None
    sha256: Annotated[str, BeforeValidator(check_text), AfterValidator(_check_sha256)] | None = None
    versions_url: VersionsUrlTemplate | None = None
    username: BasicUsername | None = None
    password_env: EnvName | None = None
    token_env: EnvName | None = None
    rebuilt_versions: Flag = False  # when not given, the repository's

    @field_validator("repository")
    @classmethod
    def _repository_exists(cls, value: str | None, info: ValidationInfo) -> str | None:
        known = (info.context or {}).get("repositories")
        if value is not None and known is not None and value not in known:
            raise unknown_repository(value, known)
        return value

    @model_validator(mode="after")
    def _one_source(self, info: ValidationInfo) -> PackageConfig:
        if self.repository is not None:
            sources = {"url": self.url, "sha256_url": self.sha256_url, "local_dir": self.local_dir,
                       "versions_url": self.versions_url}
            given = [name for name, value in sources.items() if value is not None]
            if given:
                raise ValueError(f"give either repository or {'/'.join(given)}, not both")
            if self.has_credentials and self.repository in (info.context or {}).get("local_repositories", ()):
                raise ValueError(f"repository {self.repository} is a local_dir: {LOCAL_DIR_NEEDS_NO_CREDENTIALS}")
            return self
        if self.url is None and self.local_dir is None:
            raise ValueError("needs a repository (a name from `repositories`) or a url or a local_dir")
        if self.url is not None and self.local_dir is not None:
            raise ValueError("give either url or local_dir, not both")
        if self.sha256_url is not None and self.url is None:
            raise ValueError("sha256_url needs url")
        if self.url is not None and self.sha256_url is None and self.sha256 is None:
            raise ValueError('a url package needs sha256_url (e.g. "{url}.sha256") or sha256 so hosts can '
                             "verify it")
        if self.versions_url is not None and self.url is None:
            raise ValueError("versions_url needs url (a local_dir is listed by graylift itself)")
        return self


def unknown_repository(name: str, known: Any) -> PydanticCustomError:
    names = ", ".join(sorted(str(k) for k in known)) or "none are defined"
    return PydanticCustomError("unknown_repository", "unknown repository {name}; known repositories: {known}",
                               {"name": show(name), "known": names})


class ResolvedPackage(BaseModel):
    """Where an app's packages come from, with the repository reference resolved.

    Credentials are names only: ``password_env`` / ``token_env`` name the environment variables that hold
    the secrets (read when the adapters are built), so this model can be stored with a release.
    ``rebuilt_versions``: the same version may come back with another sha256 (e.g. ``-SNAPSHOT`` builds);
    when false, versions are immutable.
    """

    model_config = ConfigDict(frozen=True)

    type: PackageKind
    url: str | None = None  # template: {app} {version} {ext}
    sha256_url: str | None = None  # template: {app} {version} {ext} {url}
    local_dir: Path | None = None
    sha256: str | None = None  # fixed digest
    versions_url: str | None = None  # template: {app} {ext}; a page listing the versions (console)
    repository: str | None = None
    username: str | None = None  # HTTP basic auth, with password_env
    password_env: str | None = None
    token_env: str | None = None  # a bearer token
    rebuilt_versions: bool = False
