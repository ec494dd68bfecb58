"""A deterministic simulation of graylift: the real service, engine, store, steps and plan, over a simulated
fleet with injected faults, on virtual time. ``python -m graylift.sim --seeds N`` (or ``scripts/simulate``)."""

from graylift.sim.run import Outcome, run_scenario, shrink
from graylift.sim.scenario import Action, Scenario, generate

__all__ = ["Action", "Outcome", "Scenario", "generate", "run_scenario", "shrink"]
