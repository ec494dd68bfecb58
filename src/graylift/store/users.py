"""Users, their grants, their API tokens and console sessions. Only hashes are stored: never a token, a
session id or a password."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from graylift.store import tables as t
from graylift.store.records import from_row
from graylift.store.serverbase import AccountError, Missing, ServerStore, where_given


@dataclass(frozen=True)
class User:
    id: int
    name: str
    disabled: bool
    has_password: bool
    created_at: datetime
    created_by: str


@dataclass(frozen=True)
class GrantRow:
    app: str
    env: str
    role: str


@dataclass(frozen=True)
class Token:
    id: int
    user: str
    name: str
    prefix: str
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None


@dataclass(frozen=True)
class Session:
    user: User
    csrf: str
    expires_at: datetime


class UserStore(ServerStore):
    # ------------------------------------------------------------------ users and grants
    def create_user(self, name: str, password_hash: str | None, *, created_by: str) -> User:
        try:
            with self._write_engine.begin() as conn:
                conn.execute(sa.insert(t.users).values(name=name, password_hash=password_hash, disabled=False,
                                                       created_at=self._now(), created_by=created_by))
        except IntegrityError:
            raise AccountError(f"user {name} already exists") from None
        return self.user(name)

    def find_user(self, name: str) -> User | None:
        found = self.password_hash(name)
        return found[0] if found else None

    def user(self, name: str) -> User:
        found = self.find_user(name)
        if found is None:
            raise Missing(f"no user {name}; `graylift users list` shows them")
        return found

    def users(self) -> list[User]:
        with self._read() as conn:
            return [_user(r) for r in conn.execute(sa.select(t.users).order_by(t.users.c.name)).mappings()]

    def password_hash(self, name: str) -> tuple[User, str | None] | None:
        with self._read() as conn:
            row = conn.execute(sa.select(t.users).where(t.users.c.name == name)).mappings().first()
        return (_user(row), row["password_hash"]) if row else None

    def set_password(self, name: str, password_hash: str | None) -> None:
        self._update_user(name, {"password_hash": password_hash})

    def set_disabled(self, name: str, disabled: bool) -> None:
        user = self.user(name)
        self._update_user(name, {"disabled": disabled})
        if disabled:
            with self._write() as conn:
                conn.execute(sa.delete(t.web_sessions).where(t.web_sessions.c.user_id == user.id))

    def _update_user(self, name: str, values: dict[str, Any]) -> None:
        with self._write() as conn:
            if not conn.execute(sa.update(t.users).where(t.users.c.name == name).values(values)).rowcount:
                raise Missing(f"no user {name}; `graylift users list` shows them")

    def grants(self, user_id: int) -> list[GrantRow]:
        c = t.grants.c
        with self._read() as conn:
            rows = conn.execute(sa.select(c.app, c.env, c.role).where(c.user_id == user_id)
                                .order_by(c.app, c.env)).all()
        return [GrantRow(r.app, r.env, r.role) for r in rows]

    def set_grant(self, name: str, app: str, env: str, role: str) -> None:
        user = self.user(name)
        c = t.grants.c
        with self._write() as conn:
            key = (c.user_id == user.id, c.app == app, c.env == env)
            if not conn.execute(sa.update(t.grants).where(*key).values(role=role)).rowcount:
                conn.execute(sa.insert(t.grants).values(user_id=user.id, app=app, env=env, role=role))

    def remove_grant(self, name: str, app: str, env: str) -> bool:
        user = self.user(name)
        c = t.grants.c
        with self._write() as conn:
            return bool(conn.execute(sa.delete(t.grants).where(c.user_id == user.id, c.app == app,
                                                               c.env == env)).rowcount)

    def holders(self, roles: tuple[str, ...]) -> list[tuple[str, GrantRow]]:
        """(user, grant) of every enabled user with one of ``roles`` anywhere (to find whom to notify)."""
        query = (sa.select(t.users.c.name, t.grants.c.app, t.grants.c.env, t.grants.c.role)
                 .join(t.grants, t.grants.c.user_id == t.users.c.id)
                 .where(t.grants.c.role.in_(roles), t.users.c.disabled.is_(False)).order_by(t.users.c.name))
        with self._read() as conn:
            return [(r.name, GrantRow(r.app, r.env, r.role)) for r in conn.execute(query)]

    # ------------------------------------------------------------------ API tokens
    def add_token(self, name: str, *, token_name: str, prefix: str, token_hash: str,
                  expires_at: datetime | None) -> Token:
        user = self.user(name)
        with self._write() as conn:
            token_id = conn.execute(sa.insert(t.api_tokens).values(
                user_id=user.id, name=token_name, prefix=prefix, token_hash=token_hash, created_at=self._now(),
                expires_at=expires_at, last_used_at=None, revoked_at=None).returning(t.api_tokens.c.id)).scalar_one()
        return self.token(token_id)

    def token(self, token_id: int) -> Token:
        found = self.tokens(token_id=token_id)
        if not found:
            raise Missing(f"no token #{token_id}")
        return found[0]

    def tokens(self, user: str | None = None, *, token_id: int | None = None) -> list[Token]:
        query = where_given(_TOKENS.order_by(t.api_tokens.c.id), (t.users.c.name, user), (t.api_tokens.c.id, token_id))
        with self._read() as conn:
            return [_token(r) for r in conn.execute(query).mappings()]

    def token_by_hash(self, token_hash: str) -> tuple[Token, User] | None:
        with self._read() as conn:
            row = conn.execute(_TOKENS.where(t.api_tokens.c.token_hash == token_hash)).mappings().first()
            if row is None:
                return None
            user = conn.execute(sa.select(t.users).where(t.users.c.id == row["user_id"])).mappings().one()
        return _token(row), _user(user)

    def touch_token(self, token_id: int, at: datetime) -> None:
        with self._write() as conn:
            conn.execute(sa.update(t.api_tokens).where(t.api_tokens.c.id == token_id).values(last_used_at=at))

    def revoke_token(self, token_id: int) -> Token:
        with self._write() as conn:
            done = conn.execute(sa.update(t.api_tokens).where(t.api_tokens.c.id == token_id,
                                                              t.api_tokens.c.revoked_at.is_(None))
                                .values(revoked_at=self._now())).rowcount
        token = self.token(token_id)
        if not done:
            raise AccountError(f"token #{token_id} was already revoked")
        return token

    # ------------------------------------------------------------------ console sessions
    def add_session(self, id_hash: str, name: str, csrf: str, expires_at: datetime) -> None:
        user = self.user(name)
        with self._write() as conn:
            conn.execute(sa.delete(t.web_sessions).where(t.web_sessions.c.expires_at < self._now()))
            conn.execute(sa.insert(t.web_sessions).values(id_hash=id_hash, user_id=user.id, csrf=csrf,
                                                          created_at=self._now(), expires_at=expires_at))

    def session(self, id_hash: str) -> Session | None:
        query = (sa.select(t.web_sessions.c.csrf, t.web_sessions.c.expires_at, t.users)
                 .join(t.users, t.users.c.id == t.web_sessions.c.user_id)
                 .where(t.web_sessions.c.id_hash == id_hash))
        with self._read() as conn:
            row = conn.execute(query).mappings().first()
        if row is None:
            return None
        return Session(_user(row), row["csrf"], row["expires_at"])

    def end_session(self, id_hash: str) -> None:
        with self._write() as conn:
            conn.execute(sa.delete(t.web_sessions).where(t.web_sessions.c.id_hash == id_hash))


_TOKENS = (sa.select(t.api_tokens, t.users.c.name.label("user"))
           .join(t.users, t.users.c.id == t.api_tokens.c.user_id))
"""Every API token with its user's name."""


def _user(r: Any) -> User:
    return from_row(User, r, disabled=bool(r["disabled"]), has_password=bool(r["password_hash"]))


def _token(r: Any) -> Token:
    return from_row(Token, r)
