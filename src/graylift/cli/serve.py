"""`graylift serve`, `graylift worker`, and the server's accounts and rules at its own shell: `graylift users`,
`graylift tokens`, `graylift policy`, `graylift freeze`.

The account commands work on the state database directly, as the person at the server's shell (audited as
``local:<unix user>``): that is how the first admin is made, before anyone can log in.
"""

from __future__ import annotations

import ipaddress
import logging
import signal
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from graylift.auth import ANY, Desk, Grant, InputError, Role, local_actor
from graylift.cli.common import ConfigOpt, guarded, local_service, who
from graylift.cli.output import console, err, error, show_table, table, warn
from graylift.errors import UsageError

users_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None, add_completion=False,
                     help="Users of `graylift serve` and their roles per app x env.")
tokens_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None, add_completion=False,
                     help="API tokens (for CI and `--server`): shown once, stored hashed.")
policy_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None, add_completion=False,
                     help="How many approvals a release of an environment needs.")
freeze_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None, add_completion=False,
                     help="Freeze windows: no release (rollbacks allowed) unless an "
                         "admin overrides with a reason.")

AppScope = Annotated[str, typer.Option("--app", help="An app, or * for every app.")]
EnvScope = Annotated[str, typer.Option("--env", "-e", help="An environment, or * for every one.")]


def _desk(config: Path | None) -> Desk:
    return Desk(local_service(config, "users, tokens, policies and freeze windows are kept in the state database"))


def _me() -> Any:
    return local_actor(who())


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# ---------------------------------------------------------------------------------------------- serve, worker
def serve(host: Annotated[str, typer.Option(help="Address to listen on; another than loopback needs auth.")]
          = "127.0.0.1",
          port: Annotated[int, typer.Option(min=1, max=65535)] = 8080,
          public_url: Annotated[str, typer.Option(help="The URL people reach the console at (for links in "
                                                       "messages); default http://HOST:PORT.")] = "",
          no_auth: Annotated[bool, typer.Option("--no-auth", help="Everyone is an admin: only on 127.0.0.1.")]
          = False,
          workers: Annotated[bool, typer.Option(help="Drive releases in this process too.")] = True,
          take_over: Annotated[bool, typer.Option(help="Take over releases whose controller is gone.")] = True,
          max_releases: Annotated[int, typer.Option(min=1, max=200, help="Releases driven at once.")] = 8,
          tls_cert: Annotated[Path | None, typer.Option(help="PEM certificate: serve HTTPS.")] = None,
          tls_key: Annotated[Path | None, typer.Option(help="PEM private key of --tls-cert.")] = None,
          config: ConfigOpt = None) -> None:
    """Serve the HTTP API, the web console and /metrics, and drive releases (the worker pool)."""
    import uvicorn

    from graylift.api.app import create_app
    from graylift.api.deps import ServerSettings

    if no_auth and not is_loopback(host):
        error(f"refusing to serve without authentication on {host}: --no-auth is for 127.0.0.1 only. Make an "
              "admin with `graylift users add NAME --role admin` and drop --no-auth")
        raise typer.Exit(2)
    if (tls_cert is None) != (tls_key is None):
        error("give both --tls-cert and --tls-key, or neither")
        raise typer.Exit(2)

    def body() -> None:
        gl = local_service(config)  # this is the server: a server named for the CLI is not asked
        gl.store  # open and migrate now: a bad database stops the server before it listens  # noqa: B018
        settings = ServerSettings(host=host, port=port, public_url=public_url, auth=not no_auth,
                                  cookie_secure=tls_cert is not None or public_url.startswith("https://"),
                                  workers=workers, take_over=take_over, max_releases=max_releases)
        if settings.auth and not Desk(gl).accounts.users():
            warn("no user yet: make the first admin with `graylift users add NAME --role admin`")
        if not is_loopback(host) and tls_cert is None and not public_url.startswith("https://"):
            warn(f"serving plain HTTP on {host}: put TLS in front (or --tls-cert) so passwords and tokens are "
                 "not sent in the clear")
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        console.print(f"graylift serve on {settings.url} (state {gl.store.url.render_as_string(hide_password=True)})"
                      f"{'; workers on' if workers else ''}")
        uvicorn.run(create_app(gl, settings), host=host, port=port, log_level="info", proxy_headers=False,
                    ssl_certfile=str(tls_cert) if tls_cert else None, ssl_keyfile=str(tls_key) if tls_key else None,
                    timeout_graceful_shutdown=5)

    guarded(body)


def worker(release: Annotated[int | None, typer.Argument(metavar="RELEASE", help="Drive this one release and exit.")]
           = None,
           take_over: Annotated[bool, typer.Option(help="Take over releases whose controller is gone.")] = True,
           max_releases: Annotated[int, typer.Option(min=1, max=200)] = 8,
           interval: Annotated[float, typer.Option(min=0.1, max=60)] = 1.0,
           config: ConfigOpt = None) -> None:
    """Drive releases: every release that needs a driver (several workers share them on PostgreSQL)."""
    if release is not None:
        from graylift.cli.releases import worker as one

        one(release, config)
        return
    from graylift.pool import WorkerPool

    def body() -> None:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        pool = WorkerPool(local_service(config),  # a worker drives releases here, whatever server the CLI names
                           max_releases=max_releases, interval=interval, take_over=take_over)
        signal.signal(signal.SIGTERM, lambda *_: pool.request_stop())
        console.print(f"graylift worker: driving up to {max_releases} release(s); Ctrl-C or SIGTERM stops")
        try:
            pool.run_forever()
        except KeyboardInterrupt:
            pool.stop()

    guarded(body)


# ---------------------------------------------------------------------------------------------- users
def _password(stdin: bool, none: bool) -> str | None:
    if none:
        return None
    if stdin:
        return sys.stdin.readline().rstrip("\n")
    try:
        return str(typer.prompt("password", hide_input=True, confirmation_prompt=True))
    except typer.Abort:  # standard input ended (a script's `< /dev/null`), or Ctrl-D
        raise UsageError("no password given (standard input ended): type it at the prompt, or use "
                         "--password-stdin (or --no-password for a user of API tokens only)") from None


@users_app.command("add")
def users_add(name: str,
              role: Annotated[Role | None, typer.Option(help="A first grant (more with `users grant`).")] = None,
              app_name: AppScope = ANY, env: EnvScope = ANY,
              password_stdin: Annotated[bool, typer.Option(help="Read the password from stdin.")] = False,
              no_password: Annotated[bool, typer.Option(help="No password: API tokens only (a CI user).")] = False,
              config: ConfigOpt = None) -> None:
    """Add a user (asks for a password; argon2id-hashed)."""

    def body() -> None:
        password = _password(password_stdin, no_password)
        grants = [Grant(app_name, env, role)] if role else []
        _desk(config).create_user(_me(), name, password, grants)
        scope = f" as {role.value} on {app_name}/{env}" if role else " (no role yet: `graylift users grant`)"
        console.print(f"user {name} added{scope}")

    guarded(body)


@users_app.command("list")
def users_list(config: ConfigOpt = None) -> None:
    """Users, their roles, and whether they can log in."""

    def body() -> None:
        rows = table("user", "roles", "password", "state", "created")
        for user, grants in _desk(config).users(_me()):
            roles = ", ".join(f"{g.role.value} on {g.app}/{g.env}" for g in grants) or "-"
            rows.add_row(user.name, roles, "yes" if user.has_password else "no (tokens only)",
                          "disabled" if user.disabled else "active", f"{user.created_at:%Y-%m-%d} by {user.created_by}")
        show_table(rows)

    guarded(body)


@users_app.command("grant")
def users_grant(name: str, role: Role, app_name: AppScope = ANY, env: EnvScope = ANY,
                config: ConfigOpt = None) -> None:
    """Give a user a role on an app x env (replaces their role there)."""
    guarded(lambda: _desk(config).grant(_me(), name, app_name, env, role))
    console.print(f"{name}: {role.value} on {app_name}/{env}")


@users_app.command("revoke")
def users_revoke(name: str, app_name: AppScope = ANY, env: EnvScope = ANY, config: ConfigOpt = None) -> None:
    """Take away a user's role on an app x env."""
    removed = guarded(lambda: _desk(config).revoke_grant(_me(), name, app_name, env))
    console.print(f"{name}: role on {app_name}/{env} {'removed' if removed else 'was not given'}")


@users_app.command("passwd")
def users_passwd(name: str, password_stdin: Annotated[bool, typer.Option()] = False, config: ConfigOpt = None) -> None:
    """Set a user's password."""

    def body() -> None:
        password = _password(password_stdin, False)
        assert password is not None
        _desk(config).set_password(_me(), name, password)
        console.print(f"{name}: password set")

    guarded(body)


@users_app.command("disable")
def users_disable(name: str, config: ConfigOpt = None) -> None:
    """Disable a user: their sessions end and their tokens stop working."""
    guarded(lambda: _desk(config).set_disabled(_me(), name, True))
    console.print(f"{name}: disabled")


@users_app.command("enable")
def users_enable(name: str, config: ConfigOpt = None) -> None:
    """Enable a disabled user again."""
    guarded(lambda: _desk(config).set_disabled(_me(), name, False))
    console.print(f"{name}: enabled")


# ---------------------------------------------------------------------------------------------- tokens
@tokens_app.command("create")
def tokens_create(user: Annotated[str, typer.Option("--user", help="Whose token.")],
                  name: Annotated[str, typer.Option("--name", help="What it is for, e.g. ci-pyapp.")],
                  days: Annotated[int | None, typer.Option(min=1, max=3650, help="Lifetime; none: no end.")] = None,
                  config: ConfigOpt = None) -> None:
    """Create an API token; it is printed this once (only its hash is kept)."""

    def body() -> None:
        token, secret = _desk(config).create_token(_me(), user, name, days=days)
        err.print(f"token #{token.id} {token.name} for {user}"
                  f"{f', expires {token.expires_at:%Y-%m-%d}' if token.expires_at else ''}; shown once:")
        print(secret)

    guarded(body)


@tokens_app.command("list")
def tokens_list(user: Annotated[str | None, typer.Option("--user")] = None, config: ConfigOpt = None) -> None:
    """Tokens (never the tokens themselves: their first characters, use and state)."""

    def body() -> None:
        rows = table("#", "user", "name", "starts with", "created", "expires", "last used", "state")
        for t in _desk(config).tokens(_me(), user) if user else _desk(config).accounts.tokens():
            rows.add_row(str(t.id), t.user, t.name, t.prefix + "...", f"{t.created_at:%Y-%m-%d}",
                          f"{t.expires_at:%Y-%m-%d}" if t.expires_at else "never",
                          f"{t.last_used_at:%Y-%m-%d %H:%M}" if t.last_used_at else "never",
                          "revoked" if t.revoked_at else "active")
        show_table(rows)

    guarded(body)


@tokens_app.command("revoke")
def tokens_revoke(token_id: int, config: ConfigOpt = None) -> None:
    """Revoke a token at once."""
    token = guarded(lambda: _desk(config).revoke_token(_me(), token_id))
    console.print(f"token #{token.id} {token.name} of {token.user} revoked")


# ---------------------------------------------------------------------------------------------- policy, freeze
@policy_app.command("set")
def policy_set(env: str, approvals: Annotated[int, typer.Option(min=0, max=10)],
               app_name: AppScope = ANY,
               approve_rollbacks: Annotated[bool, typer.Option(help="Rollbacks need approval too.")] = False,
               config: ConfigOpt = None) -> None:
    """How many approvals (by people other than the requester) releases to ENV need."""
    guarded(lambda: _desk(config).set_policy(_me(), app_name, env, approvals, approve_rollbacks))
    console.print(f"{app_name}/{env}: {approvals} approval(s){' (rollbacks too)' if approve_rollbacks else ''}")


@policy_app.command("list")
def policy_list(config: ConfigOpt = None) -> None:
    """The policies set (without one, prod and production need 1 approval, other envs none)."""

    def body() -> None:
        rows = table("app", "env", "approvals", "rollbacks need approval", "set by")
        for p in _desk(config).policies(_me()):
            rows.add_row(p.app, p.env, str(p.approvals), "yes" if p.approve_rollbacks else "no", p.updated_by)
        show_table(rows)

    guarded(body)


def _when(value: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InputError(f"{value!r} is not a time like 2026-05-01T18:00Z") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@freeze_app.command("add")
def freeze_add(start: Annotated[str, typer.Option("--from", help="ISO time, UTC unless given.")],
               end: Annotated[str, typer.Option("--until", help="ISO time, UTC unless given.")],
               reason: Annotated[str, typer.Option()], app_name: AppScope = ANY, env: EnvScope = ANY,
               config: ConfigOpt = None) -> None:
    """Add a freeze window."""
    window = guarded(lambda: _desk(config).add_freeze(_me(), app_name, env, _when(start), _when(end), reason))
    console.print(f"freeze #{window.id}: {app_name}/{env} {window.starts_at:%Y-%m-%d %H:%M} to "
                  f"{window.ends_at:%Y-%m-%d %H:%M} UTC")


@freeze_app.command("list")
def freeze_list(config: ConfigOpt = None) -> None:
    """Freeze windows in force or to come."""

    def body() -> None:
        rows = table("#", "app", "env", "from (UTC)", "until (UTC)", "reason", "by")
        for f in _desk(config).freezes(_me()):
            rows.add_row(str(f.id), f.app, f.env, f"{f.starts_at:%Y-%m-%d %H:%M}", f"{f.ends_at:%Y-%m-%d %H:%M}",
                          f.reason, f.created_by)
        show_table(rows)

    guarded(body)


@freeze_app.command("rm")
def freeze_rm(freeze_id: int, config: ConfigOpt = None) -> None:
    """Remove a freeze window."""
    guarded(lambda: _desk(config).delete_freeze(_me(), freeze_id))
    console.print(f"freeze #{freeze_id} removed")
