"""The graylift config file (graylift.yaml): its models, its loader, and the helpers the engine calls.

``load_config(path)`` reads the YAML, validates it and turns every problem into one
:class:`graylift.errors.ConfigError` naming the file, the line and the field of each problem.

    loader.py    load_config, example_config_text: reading, validating, collecting problems
    root.py      GrayliftConfig: state, ssh, repositories, apps; app_for_env merges an env's override
    app.py       AppConfig: one app (package, deploy, commands, health, traffic, monitoring, inventory)
    package.py   repositories and an app's package, and the two resolved
    strategy.py  canary, batches, failure budgets
    merge.py     env overrides merged over an app, each value's origin kept
    problems.py  pydantic's errors worded and located; one ConfigError for all

The value types every section uses are in :mod:`graylift.schema`. A backend's section is in its own module
(``graylift.adapters.traffic.etcd.EtcdTraffic``, ...; ``health`` and ``ssh`` too), listed once in its
port's registry, from which ``AppConfig`` takes its ``traffic`` / ``monitoring`` / ``inventory`` unions.
Secrets are never fields: a ``*_env`` field names the environment variable that holds one, read when the
adapter is built, and a URL with credentials in it (``https://user:pass@...``) is refused in every URL
field: it would end up in logs, in argv on the hosts and in the database.
"""

from graylift.adapters.health import HealthConfig, HttpCheckConfig
from graylift.adapters.transport.ssh import SshConfig
from graylift.config.app import AppConfig, CommandsConfig, DeployConfig, TrafficCheckConfig
from graylift.config.loader import example_config_text, load_config
from graylift.config.package import PackageConfig, RepositoryConfig, ResolvedPackage
from graylift.config.root import GrayliftConfig
from graylift.config.strategy import BatchConfig, CanaryConfig, FailureBudgetConfig, StrategyConfig
from graylift.schema import COMMAND_PLACEHOLDERS, render_command, render_template
from graylift.state_location import DEFAULT_STATE_DB, STATE_ENV_VAR, default_state_db, resolve_state

__all__ = [
    "COMMAND_PLACEHOLDERS",
    "DEFAULT_STATE_DB",
    "STATE_ENV_VAR",
    "AppConfig",
    "BatchConfig",
    "CanaryConfig",
    "CommandsConfig",
    "DeployConfig",
    "FailureBudgetConfig",
    "GrayliftConfig",
    "HealthConfig",
    "HttpCheckConfig",
    "PackageConfig",
    "RepositoryConfig",
    "ResolvedPackage",
    "SshConfig",
    "StrategyConfig",
    "TrafficCheckConfig",
    "default_state_db",
    "example_config_text",
    "load_config",
    "render_command",
    "render_template",
    "resolve_state",
]
