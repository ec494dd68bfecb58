"""Canary analysis from tables of windows (graylift.core.analysis): one row per rule of the module docstring."""

from __future__ import annotations

import random

import pytest

from graylift.core.analysis import AnalysisSettings, Group, Judgement, Verdict, Window, errors, judge

S = AnalysisSettings(min_samples=10, min_requests=500)


def _samples(mean: float, n: int, seed: int, spread: float = 0.1) -> tuple[float, ...]:
    rng = random.Random(seed)
    return tuple(mean * (1 + rng.uniform(-spread, spread)) for _ in range(n))


def _group(latency_mean: float = 0.020, n: int = 30, errors: float | None = 0, requests: float | None = 3000,
           seed: int = 1) -> Group:
    return Group(p50=_samples(latency_mean, n, seed), p99=_samples(latency_mean * 2, n, seed + 100),
                 errors=errors, requests=requests)


GOOD = _group(seed=1)

# (case, canary, baseline, final, verdict)
TABLE = [
    ("same version: passes at the end", _group(seed=2), GOOD, True, Verdict.PASS),
    ("same version: an early judgement never passes", _group(seed=2), GOOD, False, Verdict.CONTINUE),
    ("2% 5xx against none fails, even early", _group(errors=60, seed=2), GOOD, False, Verdict.FAIL),
    ("30% slower fails", _group(0.026, seed=2), GOOD, True, Verdict.FAIL),
    ("30% slower fails early too", _group(0.026, seed=2), GOOD, False, Verdict.FAIL),
    ("5% slower is within the 1.10 allowance", _group(0.021, seed=2), GOOD, True, Verdict.PASS),
    ("2x slower with 5 samples: critical, fails at once", _group(0.040, n=5, seed=2), _group(n=5), False,
     Verdict.FAIL),
    ("1.3x slower with 5 samples: too few to fail below the critical ratio", _group(0.026, n=5, seed=2),
     _group(n=5), True, Verdict.INCONCLUSIVE),
    ("too little traffic: inconclusive at the end, never a pass", _group(requests=100, seed=2),
     _group(requests=100), True, Verdict.INCONCLUSIVE),
    ("no error data is not zero", _group(errors=None, seed=2), GOOD, True, Verdict.INCONCLUSIVE),
    ("no latency data is not zero", Group(errors=0, requests=3000), GOOD, True, Verdict.INCONCLUSIVE),
    ("one error in 3000 (rate under the floor) passes", _group(errors=1, seed=2), GOOD, True, Verdict.PASS),
    ("the same error rate on both sides passes", _group(errors=60, seed=2), _group(errors=60), True, Verdict.PASS),
]


@pytest.mark.parametrize(("case", "canary", "baseline", "final", "verdict"), TABLE, ids=[r[0] for r in TABLE])
def test_judge(case: str, canary: Group, baseline: Group, final: bool, verdict: Verdict) -> None:
    got = judge(Window(canary, baseline), S, final=final)
    assert got.verdict is verdict, got.reason


def test_mostly_zero_error_series_is_judged_on_sums() -> None:
    """Per-step 5xx counts of a 2% canary at 10 requests a step are mostly zeros; summed over the window
    against the requests they fail Fisher's test, and a baseline with the same rate passes."""
    rng = random.Random(7)
    steps = [sum(rng.random() < 0.02 for _ in range(10)) for _ in range(60)]
    assert steps.count(0) > 40
    clean = errors(Group(errors=sum(steps), requests=600), Group(errors=0, requests=600), S)
    same = errors(Group(errors=sum(steps), requests=600), Group(errors=sum(steps), requests=600), S)
    assert clean.verdict is Verdict.FAIL and clean.p_value is not None and clean.p_value < S.alpha
    assert clean.ratio is None  # against a baseline with no errors: no finite ratio
    assert same.verdict is Verdict.PASS


def test_query_errors_retry_then_halt() -> None:
    assert judge(None, S, final=False, query_errors=1, error="connection refused").verdict is Verdict.ERROR
    halted = judge(None, S, final=True, query_errors=S.max_query_errors, error="connection refused")
    assert halted.verdict is Verdict.HALT and "connection refused" in halted.reason


def test_judgement_records_query_n_p_and_ratio() -> None:
    got = judge(Window(_group(0.026, seed=2), GOOD, {"latency_p50": "q50", "errors": "qe"}), S, final=True)
    record = got.to_json()
    p50 = next(m for m in record["metrics"] if m["name"] == "latency_p50")
    assert p50["query"] == "q50" and p50["n"] == [30, 30] and p50["verdict"] == "fail"
    assert p50["p_value"] < 0.01 and 1.2 < p50["ratio"] < 1.4
    assert Judgement(**{**got.__dict__}).verdict is Verdict.FAIL
