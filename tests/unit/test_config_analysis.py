"""strategy.canary.analysis: defaults into the strategy model, one-line errors naming file:line (field)."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.unit.test_config_errors import APP, write

from graylift.config import load_config
from graylift.core.analysis import OnMetricsDown
from graylift.errors import ConfigError

CANARY = "    strategy:\n      canary: {{group: beta, bake: 30, analysis: {analysis}}}\n"


def _load(tmp_path: Path, analysis: str) -> object:
    return load_config(write(tmp_path, APP + CANARY.format(analysis=analysis)))


def test_defaults_reach_the_strategy(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, APP + CANARY.format(
        analysis="{prometheus: 'http://127.0.0.1:9090', interval: 5, on_prometheus_down: rollback}")))
    settings = cfg.apps["pyapp"].strategy_model().analysis
    assert settings is not None
    assert settings.interval == 5 and settings.on_down is OnMetricsDown.ROLLBACK
    assert settings.latency_allowance == 1.10 and settings.latency_critical == 1.5 and settings.alpha == 0.01
    assert dict(settings.queries)["errors"].startswith("sum(increase(pyapp_requests_total{{")


@pytest.mark.parametrize(("analysis", "field", "said"), [
    ("{interval: 5}", "strategy.canary.analysis.prometheus", "required"),
    ("{prometheus: 'http://p', latency_allowance: 0.9}", "strategy.canary.analysis.latency_allowance",
     "must be a ratio >= 1"),
    ("{prometheus: 'http://p', latency_allowance: 1.6}", "strategy.canary.analysis",
     "latency_critical (1.5) must be >= latency_allowance (1.6)"),
    ("{prometheus: 'http://p', significance: 0.7}", "strategy.canary.analysis.significance",
     "must be a p-value between 0 and 0.5"),
    ("{prometheus: 'http://p', queries: {errors: 'sum(x{{code=\"500\"}})'}}",
     "strategy.canary.analysis.queries.errors", "must use {hosts} or {addresses}"),
    ("{prometheus: 'http://p', queries: {errors: 'sum(x{{host=~\"{host}\"}})'}}",
     "strategy.canary.analysis.queries.errors", "unknown placeholder {host}"),
    ("{prometheus: 'http://p', on_prometheus_down: ignore}", "strategy.canary.analysis.on_prometheus_down",
     "halt"),
])
def test_errors_name_the_field(tmp_path: Path, analysis: str, field: str, said: str) -> None:
    with pytest.raises(ConfigError) as raised:
        _load(tmp_path, analysis)
    message = str(raised.value)
    assert f"({'apps.pyapp.' + field})" in message and said in message, message
    assert "\n" not in message.strip() and "Traceback" not in message


def test_analysis_needs_a_bake(tmp_path: Path) -> None:
    text = APP + "    strategy:\n      canary: {group: beta, analysis: {prometheus: 'http://p'}}\n"
    with pytest.raises(ConfigError, match="analysis needs a bake"):
        load_config(write(tmp_path, text))
