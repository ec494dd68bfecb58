"""The gates a release passes before its preflight, whoever starts it (CLI, API, console, a schedule):

* **release windows** (``strategy.windows``): outside every window a release is refused with the next
  opening, unless a reason is given (journaled by the caller);
* **promotion** (``promotion: {after: ENV, min_age: SECONDS}``, usually set per env): a version comes to this
  environment only after a release of it succeeded in ``after``, at least ``min_age`` ago, and it has not been
  rolled back there since.

Rollbacks pass no gate: going back is how an outage ends.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from graylift.core.state import ReleaseKind, ReleaseState
from graylift.core.windows import Window, is_open, next_opening
from graylift.errors import OutsideWindow, PlanError
from graylift.store import Store

if TYPE_CHECKING:
    from graylift.config import AppConfig


def check_window(windows: list[Window], app: str, env: str, at: datetime, *, version: str,
                 override: str | None = None, scheduling: bool = False) -> None:
    """Refuse a release of app/env starting at ``at`` outside its windows (unless ``override`` gives why)."""
    if is_open(windows, at) or (override and override.strip()):
        return
    spans = "; ".join(w.describe() for w in windows)
    opens = next_opening(windows, at)
    when = opens.isoformat(timespec="minutes") if opens else "never (no days given)"
    hint = (f"schedule it then: `graylift schedule {app} {version} --env {env} --at {when}`"
            if opens and not scheduling else "pick a time inside a window")
    raise OutsideWindow(f"{app} ({env}) is released only in its release windows ({spans}); "
                        f"{at.isoformat(timespec='minutes')} is outside them and the next opens {when}: {hint}"
                        + ("" if scheduling else ", or give --outside-window REASON"))


def check_promotion(store: Store, cfg: AppConfig, app: str, env: str, version: str, now: datetime, *,
                    after: str | None = None) -> None:
    """Refuse ``version`` in ``env`` unless it passed the gate of ``promotion.after`` (or ``after``)."""
    gate = cfg.promotion
    source = gate.after if gate else after
    if source is None:
        return
    if after is not None and gate is not None and after != gate.after:
        raise PlanError(f"{app} comes to {env} from {gate.after} (promotion.after), not from {after}")
    bad = store.bad_versions(app, source)
    if version in bad:
        raise PlanError(f"{app} {version} was rolled back in {source} ({bad[version]}); it cannot go to {env}")
    done = [r for r in store.list_releases(app, source, limit=500)
            if r.version == version and r.kind is ReleaseKind.RELEASE and r.state is ReleaseState.SUCCEEDED]
    if not done:
        raise PlanError(f"{app} {version} goes to {env} only after it succeeded in {source}, and it has not: "
                        f"release it there first (`graylift release {app} {version} --env {source} --wait`)")
    finished = max(r.finished_at for r in done if r.finished_at is not None)
    min_age = timedelta(seconds=gate.min_age if gate else 0)
    if now - finished < min_age:
        raise PlanError(f"{app} {version} succeeded in {source} at {finished.isoformat(timespec='minutes')}; "
                        f"{env} takes it {min_age} after that (promotion.min_age): from "
                        f"{(finished + min_age).isoformat(timespec='minutes')}")
