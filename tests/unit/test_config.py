"""The config loader: valid files, the example, env overrides, the state URL and the command renderers
(the errors: test_config_errors.py)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from graylift.adapters.traffic.haproxy import HaproxyTraffic
from graylift.config import (
    AppConfig,
    GrayliftConfig,
    default_state_db,
    example_config_text,
    load_config,
    render_command,
    render_template,
)
from graylift.core.model import OnFailure, OnUnhealthy, PackageKind, PromoteMode, Strategy
from graylift.errors import ConfigError

DATA = Path(__file__).parent / "data" / "config"


def write(tmp_path: Path, text: str, name: str = "graylift.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


# ------------------------------------------------------------------------------------------ valid files


def test_schema_example_loads_with_its_values() -> None:
    config = load_config(DATA / "schema_example.yaml")
    assert config.state == "sqlite:////var/lib/graylift/state.db"
    assert config.ssh.key == Path.home() / ".ssh/id_ed25519"
    assert config.ssh.known_hosts == Path.home() / ".ssh/known_hosts"
    app = config.app_for_env("pyapp", "prod")
    assert app.strategy.canary.bake == 600  # the prod override
    assert app.strategy.canary.group == "beta"  # kept from the base
    assert config.app_for_env("pyapp", "staging").strategy.canary.bake == 60  # no override for staging
    assert [t.type for t in app.traffic] == ["haproxy", "zookeeper"]
    assert app.monitoring[0].silence_minutes == 30


def test_valid_full_config(tmp_path: Path) -> None:
    path = DATA / "valid.yaml"
    config = load_config(path)
    here = DATA.absolute()
    assert config.ssh.user == "deploy" and config.ssh.port == 2222 and config.ssh.max_connections == 20
    assert config.ssh.key == here / "keys/id_ed25519"
    assert config.ssh.known_hosts == here / "keys/known_hosts"
    assert config.repositories["drop"].local_dir == here / "packages"
    assert sorted(config.apps) == ["direct", "pyapp", "shop"]

    base = config.app_for_env("pyapp", "dev")
    assert base.deploy.dir == "/srv/pyapp" and base.deploy.keep_releases == 5
    assert base.health.http is not None and base.health.http.status == 200
    assert base.traffic[1].type == "zookeeper" and base.traffic[1].root == "/dubbo"
    assert base.strategy_model() == Strategy(
        canary_hosts=("web-01", "web-02"), canary_group=None, canary_count=1, bake_seconds=30.0,
        promote=PromoteMode.MANUAL, batch_size=None, batch_percent=25.0, pause_seconds=5.0,
        max_failed_per_batch=1, max_failed_total=2, on_failure=OnFailure.ROLLBACK,
        on_unhealthy=OnUnhealthy.FAIL, max_parallel=10, allow_half_or_more=False)

    test = config.app_for_env("pyapp", "test").strategy_model()
    assert (test.batch_size, test.batch_percent, test.canary_hosts, test.allow_half_or_more) == (
        2, None, (), True)
    prod = config.app_for_env("pyapp", "prod")
    assert prod.strategy.canary.bake == 600 and prod.strategy.canary.hosts == ["web-01", "web-02"]
    assert len(prod.traffic) == 1  # lists are replaced, not merged
    assert isinstance(prod.traffic[0], HaproxyTraffic) and prod.traffic[0].backend == "pyapp-prod"
    assert prod.envs == {}

    shop = config.app_for_env("shop", "prod")
    assert shop.deploy.keep_releases == 3 and shop.health.retries == 60 and shop.strategy.batch.size == 1
    assert not shop.strategy_model().has_canary
    assert shop.health.none and shop.health.probes() == []  # health: {none: true}
    assert config.app_for_env("direct", "prod").health.probes() == ["tcp_port"]

    lab = base.resolved_package(config)
    assert (lab.type, lab.repository, lab.sha256_url) == (PackageKind.TAR_GZ, "lab", "{url}.sha256")
    assert lab.url == "http://10.213.0.254:8081/{app}/{version}/{app}-{version}.{ext}"
    drop = shop.resolved_package(config)
    assert drop.local_dir == here / "packages" and drop.url is None
    assert drop.sha256 == "abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789"
    direct = config.app_for_env("direct", "prod").resolved_package(config)
    assert direct.url == "https://repo.example/{app}-{version}.{ext}" and direct.repository is None


def test_example_config_loads(tmp_path: Path) -> None:
    path = write(tmp_path, example_config_text())
    config = load_config(path)
    assert config.repositories["local"].local_dir == tmp_path / "packages"
    for env in ("dev", "test", "prod"):
        app = config.app_for_env("pyapp", env)
        assert app.resolved_package(config).url is not None
        assert AppConfig.model_validate(app.model_dump(mode="json")) == app
    assert config.app_for_env("pyapp", "test").strategy_model().batch_percent == 50


@pytest.mark.parametrize("env", ["dev", "test", "prod"])
@pytest.mark.parametrize("app", ["pyapp", "shop", "direct"])
def test_app_config_round_trips_through_json(app: str, env: str) -> None:
    config = load_config(DATA / "valid.yaml")
    app_config = config.app_for_env(app, env)
    again = AppConfig.model_validate(app_config.model_dump(mode="json"))
    assert again == app_config
    assert again.strategy_model() == app_config.strategy_model()


CREDENTIALS = """\
repositories:
  central:
    url: "https://repo.example/{app}/{version}/{app}-{version}.{ext}"
    sha256_url: "{url}.sha256"
    username: deploy
    password_env: REPO_PASSWORD
  snapshots:
    url: "https://repo.example/snapshots/{app}-{version}.{ext}"
    sha256_url: "{url}.sha256"
    token_env: REPO_TOKEN
    rebuilt_versions: true
apps:
"""
# app -> (its package, the resolved (username, password_env, token_env, rebuilt_versions))
RESOLUTION_CASES = {
    "inherits-basic": ("{type: jar, repository: central}", ("deploy", "REPO_PASSWORD", None, False)),
    "inherits-token-and-rebuilt": ("{type: jar, repository: snapshots}", (None, None, "REPO_TOKEN", True)),
    "token-replaces-basic": ("{type: jar, repository: central, token_env: APP_TOKEN}",
                             (None, None, "APP_TOKEN", False)),
    "basic-replaces-token": ("{type: jar, repository: snapshots, username: ci, password_env: CI_PASSWORD}",
                             ("ci", "CI_PASSWORD", None, True)),
    "says-immutable": ("{type: jar, repository: snapshots, rebuilt_versions: false}",
                       (None, None, "REPO_TOKEN", False)),
    "opts-in": ("{type: jar, repository: central, rebuilt_versions: true}", ("deploy", "REPO_PASSWORD", None, True)),
    "direct-url": ("{type: jar, url: 'https://r.example/{app}.{ext}', sha256_url: '{url}.sha256', "
                   "token_env: DIRECT_TOKEN}", (None, None, "DIRECT_TOKEN", False)),
    "no-credentials": ("{type: jar, url: 'https://r.example/{app}.{ext}', sha256: '" + "a" * 64 + "'}",
                       (None, None, None, False)),
}


def test_repository_credentials_and_rebuilt_versions_resolve(tmp_path: Path) -> None:
    from graylift.wiring import snapshot

    text = CREDENTIALS + "".join(
        f"  {app}:\n    package: {package}\n    deploy: {{dir: /srv/{app}}}\n"
        "    commands: {start: 'sh {current}/start', stop: 'sh {current}/stop'}\n    health: {tcp_port: 8080}\n"
        for app, (package, _) in RESOLUTION_CASES.items())
    text += "    envs:\n      snapshot: {package: {repository: snapshots, url: null}}\n"
    config = load_config(write(tmp_path, text))
    for app, (_, expected) in RESOLUTION_CASES.items():
        resolved = config.app_for_env(app, "prod").resolved_package(config)
        got = (resolved.username, resolved.password_env, resolved.token_env, resolved.rebuilt_versions)
        assert got == expected, app
        # the release's snapshot holds the resolved package (names of variables, never secrets) and reads back
        snap = snapshot(config, app, "prod")
        again = AppConfig.from_snapshot(snap["app"]).resolved_package()
        assert again == resolved.model_copy(update={"repository": None}), app
    # an env override switches the last app to another repository: its credentials and rebuilt_versions come along
    switched = config.app_for_env("no-credentials", "snapshot").resolved_package(config)
    assert (switched.url, switched.token_env, switched.rebuilt_versions) == (
        "https://repo.example/snapshots/{app}-{version}.{ext}", "REPO_TOKEN", True)


def test_a_release_snapshot_is_read_with_the_rules_it_started_with() -> None:
    """A release started before these rules existed (no health check, a URL with credentials) still resumes."""
    from pydantic import ValidationError

    old = {"package": {"type": "jar", "url": "http://u:pw@repo/{app}.{ext}", "sha256": "a" * 64},
           "deploy": {"dir": "/srv/a"}, "commands": {"start": "start", "stop": "stop"}}
    app = AppConfig.from_snapshot(old)
    assert app.health.probes() == [] and app.package.url == "http://u:pw@repo/{app}.{ext}"
    with pytest.raises(ValidationError) as refused:
        AppConfig.model_validate(old)
    assert {e["loc"] for e in refused.value.errors()} == {("package", "url"), ("health",)}


def test_health_none_is_no_check() -> None:
    base = {"package": {"type": "jar", "url": "http://repo/{app}.{ext}", "sha256": "a" * 64},
            "deploy": {"dir": "/srv/a"}, "commands": {"start": "start", "stop": "stop"}}
    app = AppConfig.model_validate({**base, "health": {"none": True}})
    assert app.health.none and app.health.probes() == []
    probed = AppConfig.model_validate({**base, "health": {"tcp_port": 8080, "http": {"url": "http://127.0.0.1/"}}})
    assert probed.health.probes() == ["tcp_port", "http"] and not probed.health.none



def test_an_env_override_turns_health_checks_off_by_nulling_the_probes(tmp_path: Path) -> None:
    app = """\
        apps:
          pyapp:
            package: {type: tar.gz, url: "http://x/{app}-{version}.{ext}", sha256_url: "{url}.sha256"}
            deploy: {dir: /srv/pyapp}
            commands: {start: "sh {current}/bin/start", stop: "sh {current}/bin/stop"}
            health: {tcp_port: 8080}
            envs:
              dev:
                health: {none: true, tcp_port: null}
        """
    config = load_config(write(tmp_path, app))
    assert config.app_for_env("pyapp", "dev").health.none
    assert config.app_for_env("pyapp", "prod").health.probes() == ["tcp_port"]


def test_config_built_without_a_file_merges_envs() -> None:
    config = GrayliftConfig.model_validate({"apps": {"a": {
        "package": {"type": "jar", "url": "http://x/{app}.{ext}", "sha256": "0" * 64},
        "deploy": {"dir": "/srv/a"},
        "commands": {"start": "start", "stop": "stop"},
        "health": {"command": "true"},
        "envs": {"prod": {"strategy": {"pause": 9}}}}}})
    assert config.app_for_env("a", "prod").strategy.pause == 9
    assert config.app_for_env("a", "dev").strategy.pause == 0


@pytest.mark.parametrize(("given", "size"), [
    (None, 64 * 2**20), (1, 1), ("512 KiB", 512 * 2**10), ("100MiB", 100 * 2**20), ("2GiB", 2 * 2**30)])
def test_the_repository_share_of_pre_staging_is_a_size_in_bytes(given: object, size: int) -> None:
    strategy = {} if given is None else {"prestage_repository_share": given}
    config = GrayliftConfig.model_validate({"apps": {"a": {
        "package": {"type": "jar", "url": "http://x/{app}.{ext}", "sha256": "0" * 64},
        "deploy": {"dir": "/srv/a"}, "commands": {"start": "start", "stop": "stop"},
        "health": {"command": "true"}, "strategy": strategy}}})
    assert config.app_for_env("a", "dev").strategy_model().prestage_repository_share == size


def test_unknown_app_lists_the_known_ones() -> None:
    config = load_config(DATA / "valid.yaml")
    with pytest.raises(ConfigError, match=r"unknown app 'nope'; known apps: direct, pyapp, shop"):
        config.app_for_env("nope", "prod")
    with pytest.raises(ConfigError, match="environment must be a plain name"):
        config.app_for_env("pyapp", "../prod")


# ------------------------------------------------------------------------------------------ state_url


def test_state_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GRAYLIFT_DB", raising=False)
    config_path = tmp_path / "etc" / "graylift.yaml"

    def url(state: str | None) -> str:
        return GrayliftConfig(state=state).state_url(config_path)

    assert url(None) == f"sqlite:///{default_state_db()}"
    assert url("sqlite:///state.db") == f"sqlite:///{tmp_path}/etc/state.db"
    assert url("sqlite:///db/s.db?timeout=5") == f"sqlite:///{tmp_path}/etc/db/s.db?timeout=5"
    assert url("sqlite+pysqlite:///s.db") == f"sqlite+pysqlite:///{tmp_path}/etc/s.db"
    assert url("sqlite:////var/lib/g.db") == "sqlite:////var/lib/g.db"
    assert url("sqlite:///~/g.db") == f"sqlite:///{Path.home()}/g.db"
    assert url("sqlite:///:memory:") == "sqlite:///:memory:"
    assert url("postgresql+psycopg://u@db/g") == "postgresql+psycopg://u@db/g"
    monkeypatch.setenv("GRAYLIFT_DB", "postgresql+psycopg://env@db/g")
    assert url("sqlite:///state.db") == "postgresql+psycopg://env@db/g"


# ------------------------------------------------------------------------------------------ templates


def test_render_command_quotes_every_value() -> None:
    values = {"current": "/srv/my app/current", "host": "web-01", "version": "1.0; rm -rf /"}
    assert render_command("sh {current}/bin/start {host} {version}", values) == (
        "sh '/srv/my app/current'/bin/start web-01 '1.0; rm -rf /'")
    assert render_command("echo {{literal}} {host}", values) == "echo {literal} web-01"


@pytest.mark.parametrize(("template", "message"), [
    ("sh {verison}/x", r"unknown placeholder \{verison\}; known placeholders: \{address\} \{app\}"),
    ("sh {current.x}", r"unknown placeholder \{current.x\}"),
    ("sh {current!r}", "must be plain"),
    ("sh {current", "not a valid template"),
    ("sh {app}", r"no value for placeholder \{app\}"),
])
def test_render_command_rejects_bad_templates(template: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        render_command(template, {"current": "/srv/a/current"})


def test_render_template_does_not_quote() -> None:
    assert render_template("{host}.example", {"host": "a b"}) == "a b.example"


def test_public_surface_and_doctests() -> None:
    import doctest

    import graylift.config
    from graylift.config import merge

    def order(name: str) -> tuple[int, str]:  # CONSTANTS, then Classes, then functions (the isort order)
        return (0 if name.isupper() else 1 if name[0].isupper() else 2, name)

    assert graylift.config.__all__ == sorted(graylift.config.__all__, key=order)
    assert all(hasattr(graylift.config, name) for name in graylift.config.__all__)
    assert doctest.testmod(merge).failed == 0
