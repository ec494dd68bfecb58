"""Config errors: one case per kind of problem, each named by file, line and field, worded for the person who
wrote the file; bad YAML, missing files, and the examples of the docs."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from graylift.config import (
    load_config,
)
from graylift.errors import ConfigError

DATA = Path(__file__).parent / "data" / "config"


def write(tmp_path: Path, text: str, name: str = "graylift.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


APP = """\
apps:
  pyapp:
    package: {type: tar.gz, url: "http://x/{app}-{version}.{ext}", sha256_url: "{url}.sha256"}
    deploy: {dir: /srv/pyapp}
    commands: {start: "sh {current}/bin/start", stop: "sh {current}/bin/stop"}
    health: {tcp_port: 8080}
"""
NO_HEALTH = APP.replace("    health: {tcp_port: 8080}\n", "")
SECRET = "hunter2"  # written where a secret must not be: no error message may show it

TRAFFIC_TYPES = "haproxy, zookeeper, nginx, nginx_plus, command, etcd, dubbo3, nacos, consul, eureka"

URL_CREDENTIALS = "credentials in a URL end up in logs and argv; use username + password_env or token_env"
REPO = "repositories:\n  central:\n    url: 'http://repo/{app}-{version}.{ext}'\n    sha256_url: '{url}.sha256'\n"
REPO_HERE = REPO.replace("  central:\n", "  central:  # HERE\n")  # a section's own problems name its line
DROP = "  drop: {local_dir: /packages}\n"
USE_CENTRAL = APP.replace('{type: tar.gz, url: "http://x/{app}-{version}.{ext}", sha256_url: "{url}.sha256"}',
                          "{type: tar.gz, repository: central}")
ANY_URL = [
    # (where, section text with {url}) for every URL field: none may carry credentials
    ("traffic[0].url", "    traffic:\n      - {{type: nginx_plus, url: '{url}', upstream: u, port: 80}}"),
    ("traffic[0].url", "    traffic:\n      - {{type: etcd, url: '{url}', service: s, port: 1}}"),
    ("traffic[0].url", "    traffic:\n      - {{type: nacos, url: '{url}', service: s, port: 1}}"),
    ("traffic[0].url", "    traffic:\n      - {{type: eureka, url: '{url}', app: a, port: 1}}"),
    ("traffic[0].agent_url", "    traffic:\n      - {{type: consul, service: s, agent_url: '{url}'}}"),
    ("monitoring[0].url", "    monitoring:\n      - {{type: alertmanager, url: '{url}'}}"),
    ("monitoring[0].url", "    monitoring:\n      - {{type: zabbix, url: '{url}', token_env: ZBX}}"),
    ("inventory.url", "    inventory: {{type: http, url: '{url}'}}"),
    ("inventory.url", "    inventory: {{type: netbox, url: '{url}'}}"),
]
CREDENTIAL_CASES = [
    # credentials in a URL: refused in every URL field, never echoed
    ("url-credentials-repository", REPO.replace("http://repo", f"http://deploy:{SECRET}@repo").replace(
        "{ext}'\n", "{ext}'  # HERE\n", 1) + USE_CENTRAL, "repositories.central.url", URL_CREDENTIALS),
    ("url-credentials-repository-sha256", REPO.replace("'{url}.sha256'", f"'https://{SECRET}@sums/{{app}}'  # HERE")
     + USE_CENTRAL, "repositories.central.sha256_url", URL_CREDENTIALS),
    ("url-credentials-package", APP.replace("http://x/", f"http://u:{SECRET}@x/").replace(
        'sha256"}', 'sha256"}  # HERE'), "apps.pyapp.package.url", URL_CREDENTIALS),
    ("url-credentials-package-sha256", APP.replace('sha256_url: "{url}.sha256"}',
                                                   f'sha256_url: "http://u:{SECRET}@x/s"}}  # HERE'),
     "apps.pyapp.package.sha256_url", URL_CREDENTIALS),
    ("url-credentials-health-http", NO_HEALTH + f"    health: {{http: {{url: 'http://u:{SECRET}@127.0.0.1/h'}}}}"
     "  # HERE\n", "apps.pyapp.health.http.url", URL_CREDENTIALS),
    ("url-credentials-not-http", APP + f"    traffic:\n      - {{type: nginx_plus, url: 'ftp://u:{SECRET}@x', "
     "upstream: u, port: 80}  # HERE\n", "apps.pyapp.traffic[0].url", URL_CREDENTIALS),
    ("url-credentials-in-override", APP + "    inventory: {type: http, url: 'http://cmdb/{app}'}\n    envs:\n"
     f"      prod:\n        inventory: {{url: 'http://{SECRET}@cmdb/{{app}}'}}  # HERE\n",
     "apps.pyapp.envs.prod.inventory.url", URL_CREDENTIALS),
    *[(f"url-credentials-{index}", APP + section.format(url=f"http://admin:{SECRET}@host:1/x") + "  # HERE\n",
       f"apps.pyapp.{where}", URL_CREDENTIALS) for index, (where, section) in enumerate(ANY_URL)],
    ("socket-echo-masked", APP + f"    traffic:\n      - {{type: haproxy, socket: 'http://u:{SECRET}@lb', "
     "backend: b}  # HERE\n", "apps.pyapp.traffic[0].socket",
     "must be a unix socket path (/run/...) or tcp://HOST:PORT, got 'http://***@lb'"),
    ("state-password", f"state: 'postgresql+psycopg://graylift:{SECRET}@db/graylift'  # HERE\n", "state",
     "a password in the state URL ends up in logs; put the whole URL in the GRAYLIFT_DB environment variable"),
    # username + password_env or token_env, at most one, names only
    ("repository-user-without-password", REPO_HERE + "    username: deploy\n", "repositories.central",
     "give both username and password_env"),
    ("repository-two-schemes", REPO_HERE + "    username: deploy\n    password_env: REPO_PW\n    token_env: TOK\n",
     "repositories.central", "give username + password_env (basic auth) or token_env (a bearer token), not both"),
    ("repository-token-itself", REPO + f"    token_env: '{SECRET} abc'  # HERE\n", "repositories.central.token_env",
     "must be the NAME of an environment variable"),
    ("repository-username-colon", REPO + "    username: 'de:ploy'  # HERE\n    password_env: PW\n",
     "repositories.central.username", "must not contain ':'"),
    ("repository-local-credentials", "repositories:\n  drop: {local_dir: /p, token_env: TOK}  # HERE\n",
     "repositories.drop", "username, password_env and token_env are for a url repository"),
    ("package-credentials-for-local-repository", "repositories:\n" + DROP + APP.replace(
        '{type: tar.gz, url: "http://x/{app}-{version}.{ext}", sha256_url: "{url}.sha256"}',
        "{type: tar.gz, repository: drop, token_env: TOK}  # HERE"), "apps.pyapp.package",
     "repository drop is a local_dir: username, password_env and token_env are for a url repository"),
    ("package-local-dir-credentials", APP.replace(
        '{type: tar.gz, url: "http://x/{app}-{version}.{ext}", sha256_url: "{url}.sha256"}',
        "{type: tar.gz, local_dir: /p, username: u, password_env: PW}  # HERE"), "apps.pyapp.package",
     "are for a url repository"),
    ("package-two-schemes", REPO + USE_CENTRAL.replace(
        "repository: central}", "repository: central, username: u, password_env: PW, token_env: T}  # HERE"),
     "apps.pyapp.package", "not both"),
    ("package-password-itself", APP.replace('sha256_url: "{url}.sha256"}',
                                            f'sha256_url: "{{url}}.sha256", username: u, password_env: "{SECRET}!"}}'
                                            "  # HERE"), "apps.pyapp.package.password_env",
     "must be the NAME of an environment variable"),
    ("package-password-key", APP.replace('sha256_url: "{url}.sha256"}', f'sha256_url: "{{url}}.sha256", '
                                         f'password: "{SECRET}"}}  # HERE'), "apps.pyapp.package.password",
     "unknown key 'password'; allowed keys: type, repository, url, sha256_url, local_dir, sha256, versions_url, "
     "username, password_env, token_env, rebuilt_versions"),
    ("rebuilt-versions-not-bool", APP.replace('sha256_url: "{url}.sha256"}', 'sha256_url: "{url}.sha256", '
                                              "rebuilt_versions: sometimes}  # HERE"),
     "apps.pyapp.package.rebuilt_versions", "must be true or false, got 'sometimes'"),
    ("repository-rebuilt-versions-not-bool", REPO + "    rebuilt_versions: 1  # HERE\n",
     "repositories.central.rebuilt_versions", "must be true or false, got 1"),
]

# (id, file text with "# HERE" on the line the error must name, field, message fragment)
ERROR_CASES = [
    ("typo-key", APP + "    strategy:\n      stategy: {}  # HERE\n", "apps.pyapp.strategy.stategy",
     "unknown key 'stategy'; allowed keys: canary, batch, max_parallel"),
    ("top-level-typo", "sssh: {}  # HERE\n", "sssh", "unknown key 'sssh'; allowed keys: state, ssh"),
    ("not-a-number", APP + "    strategy:\n      batch:\n        size: ten  # HERE\n",
     "apps.pyapp.strategy.batch.size", "must be a positive whole number, got 'ten'"),
    ("size-unit", APP + "    strategy:\n      prestage_repository_share: 10MB  # HERE\n",
     "apps.pyapp.strategy.prestage_repository_share", "a number with KiB, MiB or GiB (64MiB), got '10MB'"),
    ("kind-unknown", APP + "    strategy:\n      kind: red_black  # HERE\n", "apps.pyapp.strategy.kind",
     "blue_green"),
    ("blue-green-one-group", APP + "    strategy:\n      blue_green:\n        groups: [blue]  # HERE\n",
     "apps.pyapp.strategy.blue_green.groups", "must list exactly two different host groups"),
    ("blue-green-same-group", APP + "    strategy:\n      blue_green:\n        groups: [a, a]  # HERE\n",
     "apps.pyapp.strategy.blue_green.groups", "must list exactly two different host groups"),
    ("blue-green-window", APP + "    strategy:\n      blue_green:\n        rollback_window: soon  # HERE\n",
     "apps.pyapp.strategy.blue_green.rollback_window", 'a duration like "90s", "30m", "2h"'),
    ("size-zero", APP + "    strategy:\n      batch:\n        size: 0  # HERE\n",
     "apps.pyapp.strategy.batch.size", "must be a positive whole number, got 0"),
    ("size-and-percent", APP + "    strategy:\n      batch: {size: 2, percent: 10}  # HERE\n",
     "apps.pyapp.strategy.batch", "exactly one of size or percent"),
    ("neither-size-nor-percent", APP + "    strategy:\n      batch: {}  # HERE\n",
     "apps.pyapp.strategy.batch", "exactly one of size or percent"),
    ("percent-100", APP + "    strategy:\n      batch: {percent: 100}  # HERE\n",
     "apps.pyapp.strategy.batch.percent", "greater than 0 and less than 100, got 100"),
    ("keep-releases", APP.replace("deploy: {dir: /srv/pyapp}",
                                  "deploy: {dir: /srv/pyapp, keep_releases: 1}  # HERE"),
     "apps.pyapp.deploy.keep_releases", "must be a whole number >= 2"),
    ("deploy-relative", APP.replace("deploy: {dir: /srv/pyapp}", "deploy: {dir: srv/pyapp}  # HERE"),
     "apps.pyapp.deploy.dir", "must be an absolute path, got 'srv/pyapp'"),
    ("deploy-dotdot", APP.replace("deploy: {dir: /srv/pyapp}", "deploy: {dir: /srv/../etc}  # HERE"),
     "apps.pyapp.deploy.dir", "must not contain '..'"),
    ("app-name", APP.replace("  pyapp:", "  py app:  # HERE"), "apps.py app", "must be a plain name"),
    ("unknown-repository", "repositories:\n  lab: {local_dir: /pk}\n" + APP.replace(
        'package: {type: tar.gz, url: "http://x/{app}-{version}.{ext}", sha256_url: "{url}.sha256"}',
        "package:\n      type: tar.gz\n      repository: lbb  # HERE"),
     "apps.pyapp.package.repository", "unknown repository 'lbb'; known repositories: lab"),
    ("package-without-source", APP.replace(
        'package: {type: tar.gz, url: "http://x/{app}-{version}.{ext}", sha256_url: "{url}.sha256"}',
        "package: {type: tar.gz}  # HERE"), "apps.pyapp.package", "needs a repository"),
    ("package-unverifiable", APP.replace(', sha256_url: "{url}.sha256"}', "}  # HERE"),
     "apps.pyapp.package", "needs sha256_url"),
    ("package-type", APP.replace("type: tar.gz,", "type: rpm,").replace("sha256\"}", "sha256\"}  # HERE"),
     "apps.pyapp.package.type", "must be one of: war, jar, tar.gz, zip; got 'rpm'"),
    ("package-url-placeholder", APP.replace("{version}.{ext}\"", "{verison}.{ext}\"").replace(
        "sha256\"}", "sha256\"}  # HERE"), "apps.pyapp.package.url", "unknown placeholder {verison}"),
    ("start-missing", APP.replace('start: "sh {current}/bin/start", ', "").replace(
        "/bin/stop\"}", "/bin/stop\"}  # HERE"), "apps.pyapp.commands.start", "is required"),
    ("start-placeholder", APP.replace("{current}/bin/start\"", "{verison}/bin/start\"").replace(
        "/bin/stop\"}", "/bin/stop\"}  # HERE"), "apps.pyapp.commands.start",
     "unknown placeholder {verison}; known placeholders:"),
    ("placeholder-in-quotes", APP.replace('start: "sh {current}/bin/start"', "start: \"sh '{current}'/x\"")
     .replace("/bin/stop\"}", "/bin/stop\"}  # HERE"), "apps.pyapp.commands.start", "inside ' quotes"),
    ("health-retries", NO_HEALTH + "    health:\n      tcp_port: 8080\n      retries: 0  # HERE\n",
     "apps.pyapp.health.retries", "must be a positive whole number, got 0"),
    ("health-not-mapping", NO_HEALTH + "    health: 5  # HERE\n", "apps.pyapp.health",
     "must be a mapping (key: value), got 5"),
    ("health-left-out", NO_HEALTH.replace("  pyapp:", "  pyapp:  # HERE"), "apps.pyapp.health",
     "no health check, so precheck, health and bake would pass without checking anything: add process, "
     "tcp_port, http or command, or `none: true` to release without a check"),
    ("health-without-probe", NO_HEALTH + "    health: {retries: 5, timeout: 2}  # HERE\n", "apps.pyapp.health",
     "no health check"),
    ("health-none-and-probe", NO_HEALTH + "    health: {none: true, tcp_port: 8080}  # HERE\n",
     "apps.pyapp.health", "none: true means no health check, but tcp_port is given; keep one or the other"),
    ("health-none-not-bool", NO_HEALTH + "    health: {none: yes please}  # HERE\n", "apps.pyapp.health.none",
     "must be true or false, got 'yes please'"),
    ("health-override-none", APP + "    envs:\n      prod:\n        health: {none: true}  # HERE\n",
     "apps.pyapp.envs.prod.health", "none: true means no health check, but tcp_port is given"),
    ("health-override-drops-probe", APP + "    envs:\n      prod:\n        health: {tcp_port: null}  # HERE\n",
     "apps.pyapp.envs.prod.health", "no health check"),
    ("canary-hosts-and-group", APP + "    strategy:\n      canary: {hosts: [a], group: b}  # HERE\n",
     "apps.pyapp.strategy.canary", "either hosts or group, not both"),
    ("traffic-unknown-type", APP + "    traffic:\n      - {type: nginx2, upstream: x}  # HERE\n",
     "apps.pyapp.traffic[0].type", "unknown type 'nginx2'; known types: " + TRAFFIC_TYPES),
    ("traffic-no-type", APP + "    traffic:\n      - {backend: x}  # HERE\n", "apps.pyapp.traffic[0]",
     "needs a `type`: one of " + TRAFFIC_TYPES),
    ("traffic-typo", APP + "    traffic:\n      - type: haproxy\n        socket: /run/h.sock\n"
     "        backend: b\n        bakend: c  # HERE\n", "apps.pyapp.traffic[0].bakend",
     "unknown key 'bakend'; allowed keys: type, socket, backend, server, drain_timeout"),
    ("traffic-server-template", APP + "    traffic:\n      - type: haproxy\n        socket: /run/h.sock\n"
     "        backend: b\n        server: '{app}-{host}'  # HERE\n", "apps.pyapp.traffic[0].server",
     "unknown placeholder {app}; known placeholders: {address} {host}"),
    ("zookeeper-port", APP + "    traffic:\n      - {type: zookeeper, hosts: h, service: s, port: 0}"
     "  # HERE\n",
     "apps.pyapp.traffic[0].port", "must be a port number from 1 to 65535, got 0"),
    ("monitoring-unknown-type", APP + "    monitoring:\n      - {type: nagios, url: 'http://z'}  # HERE\n",
     "apps.pyapp.monitoring[0].type", "unknown type 'nagios'; known types: alertmanager, zabbix, command"),
    *[(f"{case[0]}", APP + case[1] + "  # HERE\n", f"apps.pyapp.{case[2]}", case[3]) for case in [
        # one bad value per new type: (id, section text, field, message)
        ("nginx-relative-include", "    traffic:\n      - {type: nginx, include: up.conf, upstream: u, port: 80}",
         "traffic[0].include", "must be an absolute path without '..', got 'up.conf'"),
        ("nginx-missing-upstream", "    traffic:\n      - {type: nginx, include: /u.conf, port: 80}",
         "traffic[0].upstream", "is required"),
        ("nginx-lb-port", "    traffic:\n      - {type: nginx, include: /u.conf, upstream: u, port: 80, lb_port: 0}",
         "traffic[0].lb_port", "must be a port number from 1 to 65535, got 0"),
        ("nginx-typo", "    traffic:\n      - {type: nginx, include: /u.conf, upstream: u, port: 80, lbhost: x}",
         "traffic[0].lbhost", "unknown key 'lbhost'; allowed keys: type, include, upstream, port, lb_host"),
        ("nginx-plus-url", "    traffic:\n      - {type: nginx_plus, url: 'ftp://x', upstream: u, port: 80}",
         "traffic[0].url", "must be an http:// or https:// URL, got 'ftp://x'"),
        ("nginx-plus-headers-env", "    traffic:\n      - {type: nginx_plus, url: 'http://x', upstream: u, "
         "port: 80, headers_env: {Authorization: 'Basic abc'}}", "traffic[0].headers_env.Authorization",
         "must be the NAME of an environment variable"),
        ("command-traffic-placeholder", "    traffic:\n      - {type: command, take_out: 'off {host}', "
         "put_back: 'on {hots}', verify: v}", "traffic[0].put_back",
         "unknown placeholder {hots}; known placeholders: {address} {app} {host} {port}"),
        ("command-traffic-run-on", "    traffic:\n      - {type: command, take_out: a, put_back: b, verify: c, "
         "run_on: lb}", "traffic[0].run_on", "must be one of: controller, host; got 'lb'"),
        ("etcd-mode", "    traffic:\n      - {type: etcd, url: 'http://e:2379', service: s, port: 1, mode: patch}",
         "traffic[0].mode", "must be one of: remove, field; got 'patch'"),
        ("etcd-key-template", "    traffic:\n      - {type: etcd, url: 'http://e:2379', service: s, port: 1, "
         "key_template: '/s/{app}'}", "traffic[0].key_template",
         "unknown placeholder {app}; known placeholders: {address} {host} {port} {service}"),
        ("etcd-password-itself", "    traffic:\n      - {type: etcd, url: 'http://e:2379', service: s, port: 1, "
         "username: u, password_env: 'hunter2!'}", "traffic[0].password_env",
         "must be the NAME of an environment variable"),
        ("etcd-user-without-password", "    traffic:\n      - {type: etcd, url: 'http://e:2379', service: s, "
         "port: 1, username: u}", "traffic[0]", "give both username and password_env"),
        ("dubbo3-root", "    traffic:\n      - {type: dubbo3, hosts: h, application: a, port: 1, root: dubbo}",
         "traffic[0].root", "must be an absolute ZooKeeper path like /dubbo, got 'dubbo'"),
        ("dubbo3-propagation", "    traffic:\n      - {type: dubbo3, hosts: h, application: a, port: 1, "
         "propagation_seconds: -1}", "traffic[0].propagation_seconds", "must be a number of seconds >= 0, got -1"),
        ("nacos-ephemeral", "    traffic:\n      - {type: nacos, url: 'http://n:8848', service: s, port: 1, "
         "ephemeral: maybe}", "traffic[0].ephemeral", "must be true or false, got 'maybe'"),
        ("nacos-password", "    traffic:\n      - {type: nacos, url: 'http://n:8848', service: s, port: 1, "
         "password: x}", "traffic[0].password", "unknown key 'password'; allowed keys:"),
        ("consul-agent-url", "    traffic:\n      - {type: consul, service: s, agent_url: 'http://{app}:8500'}",
         "traffic[0].agent_url", "unknown placeholder {app}; known placeholders: {address} {host}"),
        ("consul-token", "    traffic:\n      - {type: consul, service: s, token: abc}", "traffic[0].token",
         "unknown key 'token'; allowed keys: type, propagation_seconds, timeout, service, port, agent_url, "
         "service_id, token_env, reason"),
        ("eureka-port", "    traffic:\n      - {type: eureka, url: 'http://e:8761/eureka', app: a, port: x}",
         "traffic[0].port", "must be a port number from 1 to 65535, got 'x'"),
        ("eureka-instance-id", "    traffic:\n      - {type: eureka, url: 'http://e/eureka', app: a, port: 1, "
         "instance_id: '{host}:{env}'}", "traffic[0].instance_id", "unknown placeholder {env}"),
        ("zabbix-no-credentials", "    monitoring:\n      - {type: zabbix, url: 'http://z'}", "monitoring[0]",
         "give token_env (the environment variable holding an API token) or username + password_env"),
        ("zabbix-silence", "    monitoring:\n      - {type: zabbix, url: 'http://z', token_env: T, "
         "silence_minutes: 0}", "monitoring[0].silence_minutes", "must be a positive number of seconds, got 0"),
        ("command-silencer-until", "    monitoring:\n      - {type: command, mute_command: 'mute {host}', "
         "unmute_command: u, check_command: c}", "monitoring[0].mute_command",
         "must use {until} or {until_epoch} so a silence lapses by itself"),
        ("command-silencer-quotes", "    monitoring:\n      - {type: command, mute_command: 'm {until}', "
         "unmute_command: \"u '{host}'\", check_command: c}", "monitoring[0].unmute_command",
         "placeholder {host} is inside ' quotes"),
        ("inventory-no-type", "    inventory: {url: 'http://x'}", "inventory",
         "needs a `type`: one of builtin, netbox, http"),
        ("inventory-unknown-type", "    inventory: {type: ldap}", "inventory.type",
         "unknown type 'ldap'; known types: builtin, netbox, http"),
        ("netbox-kinds", "    inventory: {type: netbox, url: 'http://nb', kinds: [racks]}", "inventory.kinds[0]",
         "must be one of: devices, virtual-machines; got 'racks'"),
        ("netbox-group-from", "    inventory: {type: netbox, url: 'http://nb', group_from: tenant}",
         "inventory.group_from", "must be one of role, site, rack, cluster, none, cf:FIELD, tag-prefix:PREFIX"),
        ("netbox-page-size", "    inventory: {type: netbox, url: 'http://nb', page_size: 5000}",
         "inventory.page_size", "must be a whole number from 1 to 1000, got 5000"),
        ("netbox-filter-placeholder", "    inventory: {type: netbox, url: 'http://nb', filters: {tag: '{ap}'}}",
         "inventory.filters.tag", "unknown placeholder {ap}; known placeholders: {app} {env}"),
        ("http-inventory-url", "    inventory: {type: http, url: 'http://cmdb/{app}/{host}'}", "inventory.url",
         "unknown placeholder {host}; known placeholders: {app} {env}"),
        ("http-inventory-token", "    inventory: {type: http, url: 'http://cmdb/{app}', token: x}",
         "inventory.token", "unknown key 'token'; allowed keys: type, url, token_env, timeout, verify_tls"),
    ]],
    ("inventory-override", APP + "    inventory: {type: netbox, url: 'http://nb'}\n    envs:\n      test:\n"
     "        inventory: {type: http, url: 'http://cmdb', kinds: [devices]}  # HERE\n",
     "apps.pyapp.envs.test.inventory.kinds", "unknown key 'kinds'"),
    ("on-failure", APP + "    strategy:\n      on_failure: explode  # HERE\n",
     "apps.pyapp.strategy.on_failure", "must be one of: pause, rollback; got 'explode'"),
    ("bool", APP + "    strategy:\n      allow_half_or_more: maybe  # HERE\n",
     "apps.pyapp.strategy.allow_half_or_more", "must be true or false, got 'maybe'"),
    ("ssh-port", "ssh:\n  port: 70000  # HERE\n", "ssh.port", "must be a port number from 1 to 65535"),
    ("state-url", "state: /var/lib/state.db  # HERE\n", "state", "must be a SQLAlchemy URL"),
    ("override-value", APP + "    envs:\n      prod:\n        strategy: {batch: {size: -1}}  # HERE\n",
     "apps.pyapp.envs.prod.strategy.batch.size", "must be a positive whole number, got -1"),
    ("override-typo", APP + "    envs:\n      prod:\n        stategy: {}  # HERE\n",
     "apps.pyapp.envs.prod.stategy", "unknown key 'stategy'; allowed keys: package, deploy"),
    ("override-both-sizes", APP + "    strategy: {batch: {size: 2}}\n    envs:\n      prod:\n"
     "        strategy: {batch: {percent: 10}}  # HERE\n", "apps.pyapp.envs.prod.strategy.batch",
     "exactly one of size or percent (in an env override, set the other to null)"),
    ("override-nested-envs", APP + "    envs:\n      prod:\n        envs: {}  # HERE\n",
     "apps.pyapp.envs.prod.envs", "an env override cannot contain envs"),
    ("env-name", APP + "    envs:\n      pr od: {}  # HERE\n", "apps.pyapp.envs.pr od",
     "must be a plain name"),
    ("env-not-mapping", APP + "    envs:\n      prod: 5  # HERE\n", "apps.pyapp.envs.prod",
     "must be a mapping of app sections to override, got 5"),
    ("repository-two-sources", "repositories:\n  lab: {url: 'http://x/{app}', local_dir: /x}  # HERE\n",
     "repositories.lab", "exactly one of url (hosts download) or local_dir"),
    ("duplicate-key", "ssh: {}\nssh: {}  # HERE\n", "ssh", "duplicate key 'ssh' (first given on line 1)"),
    *CREDENTIAL_CASES,
]


@pytest.mark.parametrize(("text", "field", "message"), [case[1:] for case in ERROR_CASES],
                         ids=[case[0] for case in ERROR_CASES])
def test_error_names_file_line_and_field(tmp_path: Path, text: str, field: str, message: str) -> None:
    path = write(tmp_path, text)
    line = next(i for i, row in enumerate(text.splitlines(), 1) if row.endswith("# HERE"))
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    error = caught.value
    assert (error.file, error.line, error.field) == (str(path), line, field), str(error)
    assert str(error).startswith(f"{path}:{line} ({field}): ")
    assert message in str(error)
    assert "Traceback" not in str(error) and "pydantic" not in str(error)
    assert SECRET not in str(error)


def test_every_error_is_reported_once_per_line(tmp_path: Path) -> None:
    text = APP + ("    strategy:\n      batch: {size: ten}\n      on_failure: explode\n"
                  "    envs:\n      prod: {deploy: {keep_releases: 1}}\nssh: {usr: x}\n")
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    lines = str(caught.value).splitlines()
    assert lines[0] == "4 problems in the config:"
    assert lines[1:] == [
        f"  {path}:8 (apps.pyapp.strategy.batch.size): must be a positive whole number, got 'ten'",
        f"  {path}:9 (apps.pyapp.strategy.on_failure): must be one of: pause, rollback; got 'explode'",
        f"  {path}:11 (apps.pyapp.envs.prod.deploy.keep_releases): must be a whole number >= 2 "
        "(the running release and one to roll back to), got 1",
        f"  {path}:12 (ssh.usr): unknown key 'usr'; allowed keys: user, port, key, known_hosts, "
        "connect_timeout, command_timeout, max_connections, keepalive_seconds",
    ]
    assert (caught.value.line, caught.value.field) == (8, "apps.pyapp.strategy.batch.size")


@pytest.mark.parametrize(("text", "line", "message"), [
    ("ssh:\n  port: 22\n user: x\n", 3, "invalid YAML"),
    ("apps: {a: [1, 2}\n", 1, "invalid YAML"),
    ("ssh:\n\tport: 22\n", 2, "invalid YAML"),
    ("x: !!python/object/apply:os.system ['true']\n", 1, "could not determine a constructor"),
    ("- a\n- b\n", 1, "must be a mapping of sections"),
])
def test_bad_yaml_names_the_line(tmp_path: Path, text: str, line: int, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match=message) as caught:
        load_config(path)
    assert (caught.value.file, caught.value.line) == (str(path), line)


def test_missing_and_empty_files_say_to_run_init(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found; run `graylift init`"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="empty; run `graylift init`"):
        load_config(write(tmp_path, "# nothing yet\n"))


def test_examples_in_the_docs_load(tmp_path: Path) -> None:
    docs = (Path(__file__).parents[2] / "docs" / "config.md").read_text(encoding="utf-8")
    complete = docs.split("## A complete example", 1)[1].split("```yaml\n", 1)[1].split("```", 1)[0]
    config = load_config(write(tmp_path, complete))
    assert config.app_for_env("pyapp", "prod").strategy.canary.bake == 600
    repositories = docs.split("## `repositories.<name>`", 1)[1].split("```yaml\n", 1)[1].split("```", 1)[0]
    config = load_config(write(tmp_path, repositories, "repositories.yaml"))
    assert (config.repositories["central"].password_env, config.repositories["snapshots"].token_env) == (
        "ARTIFACTS_PASSWORD", "ARTIFACTS_TOKEN")
    assert config.repositories["snapshots"].rebuilt_versions
