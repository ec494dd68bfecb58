"""Per-host step states and the journal of a release: what each host is doing and everything that happened,
every write fenced by the release's lease (:class:`graylift.store.base.Fence`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from graylift.core.state import HostState, Request, check_host_transition
from graylift.errors import StoreError
from graylift.store import tables as t
from graylift.store.cmdb import CmdbStore
from graylift.store.records import Found, HostRunRecord, JournalEntry, host_run_from_row, journal_from_row
from graylift.store.statements import (
    FINISH_PRECHECK,
    FINISH_STEP,
    GET_REQUESTED,
    GET_RUN,
    GET_RUNS,
    INSERT_JOURNAL,
    SET_RUN_STEP,
)

if TYPE_CHECKING:
    from graylift.journal_lines import Shown

HOST_RUN_FIELDS = frozenset({"state", "step", "error", "started_at", "finished_at", "previous_version",
                             "target_version", "batch", "address", "found", "target_dir", "attention"})


@dataclass(frozen=True)
class FinishStep:
    """One host's finished step, as :meth:`RunStore.finish_step` takes it."""

    run: HostRunRecord
    step: str
    detail: dict[str, Any]
    found: Found | None = None
    skipped: list[str] = field(default_factory=list)
    then: tuple[str, dict[str, Any]] | None = None
    also: tuple[tuple[str, dict[str, Any]], ...] = ()
    """Steps that ran with ``step``, in the same host command, each done after it with its own detail."""


class RunStore(CmdbStore):
    # ------------------------------------------------------------------ host runs
    def host_runs(self, release_id: int) -> list[HostRunRecord]:
        """The release's host runs, ordered by batch then host name."""
        with self._read() as conn:
            return [host_run_from_row(r) for r in conn.execute(GET_RUNS, {"b_rid": release_id}).mappings()]

    def host_run(self, release_id: int, host: str) -> HostRunRecord:
        with self._read() as conn:
            row = conn.execute(GET_RUN, {"b_rid": release_id, "b_host": host}).mappings().first()
        if row is None:
            raise StoreError(f"host {host} is not part of release #{release_id}")
        return host_run_from_row(row)

    def requested(self, release_id: int) -> Request | None:
        """Only the release's pending request (read at every safe point)."""
        with self._read() as conn:
            value = conn.execute(GET_REQUESTED, {"id": release_id}).scalar()
        return Request(value) if value else None

    def update_host_run(self, release_id: int, host: str, *, forget_attention: tuple[str, str] | None = None,
                        **fields: Any) -> None:
        """Set some of HOST_RUN_FIELDS (read the row back with :meth:`host_run`); with ``forget_attention`` (app,
        env) the host's needs-attention mark goes in the same transaction."""
        unknown = set(fields) - HOST_RUN_FIELDS
        if unknown:
            raise TypeError(f"update_host_run cannot set {sorted(unknown)}; allowed: {sorted(HOST_RUN_FIELDS)}")
        if isinstance(fields.get("found"), Found):
            fields["found"] = fields["found"].to_json()
        if "state" in fields:
            fields["state"] = HostState(fields["state"]).value
        if fields:
            self._update_run_row(release_id, host, fields, forget_attention)

    def begin_step(self, release_id: int, host: str, step: str, detail: dict[str, Any]) -> None:
        """The host's current step, and its ``begin`` journal entry, in one transaction."""
        with self._write() as conn:
            if not conn.execute(SET_RUN_STEP, {"b_rid": release_id, "b_host": host, "b_step": step}).rowcount:
                raise StoreError(f"host {host} is not part of release #{release_id}")
            self._journal_rows(conn, release_id, host, [(step, "begin", detail)])

    def finish_step(self, run: HostRunRecord, step: str, detail: dict[str, Any], *, found: Found | None = None,
                    skipped: list[str] | None = None, then: tuple[str, dict[str, Any]] | None = None,
                    also: tuple[tuple[str, dict[str, Any]], ...] = ()) -> HostRunRecord:
        """In one transaction: ``step`` done (once in ``done_steps``) with its ``done`` journal entry, what a
        pre-check ``found`` (the host's previous version), ``skipped`` steps counted as done, and (``then``) the
        next step begun with its ``begin`` entry; ``also``: steps that ran with it in one host command, done after
        it. ``run`` is the host run as the driver last wrote it (a fenced driver is its only writer)."""
        return self.finish_steps([FinishStep(run, step, detail, found, skipped or [], then, also)])[0]

    def finish_steps(self, finishes: Sequence[FinishStep]) -> list[HostRunRecord]:
        """:meth:`finish_step` for several hosts (each at most once) in ONE transaction: one fence check, the
        rows and the journal entries each in one statement (the engine gathers the steps its hosts finish in
        one turn of the event loop). A host not in its release fails the whole transaction (StoreError)."""
        by_statement: dict[sa.Update, list[dict[str, Any]]] = {}
        entries: list[dict[str, Any]] = []
        records = []
        for f in finishes:
            run = f.run
            done = list(run.done_steps)
            done += [s for s in (f.step, *(name for name, _ in f.also), *f.skipped) if s not in done]
            current = f.then[0] if f.then else (f.also[-1][0] if f.also else f.step)
            params: dict[str, Any] = {"b_rid": run.release_id, "b_host": run.host, "b_done": done,
                                      "b_step": current}
            changes: dict[str, Any] = {"done_steps": tuple(done), "step": current}
            if f.found is not None:
                params |= {"b_found": f.found.to_json(), "b_previous": f.found.version}
                changes |= {"found": f.found, "previous_version": f.found.version}
            by_statement.setdefault(FINISH_PRECHECK if f.found is not None else FINISH_STEP, []).append(params)
            entries.append(self._journal_row(run.release_id, run.host, f.step, "done", f.detail))
            entries += [self._journal_row(run.release_id, run.host, name, "done", detail) for name, detail in f.also]
            if f.skipped:
                entries.append(self._journal_row(run.release_id, run.host, f.step, "already_on_target",
                                                 {"version": f.detail.get("current"), "skipped": f.skipped}))
            if f.then is not None:
                entries.append(self._journal_row(run.release_id, run.host, f.then[0], "begin", f.then[1]))
            records.append(replace(run, **changes))
        with self._write() as conn:
            for statement, rows in by_statement.items():
                if conn.execute(statement, rows).rowcount != len(rows):
                    known = self._hosts_of(conn, finishes)
                    missing = [f.run.host for f in finishes if f.run.host not in known]
                    raise StoreError(f"host {', '.join(missing) or '?'} is not part of release "
                                     f"#{finishes[0].run.release_id}")
            conn.execute(INSERT_JOURNAL, entries)
        return records

    @staticmethod
    def _hosts_of(conn: sa.Connection, finishes: Sequence[FinishStep]) -> set[str]:
        """Which of these hosts have a run in their release (to name the ones that do not)."""
        keys = {(f.run.release_id, f.run.host) for f in finishes}
        query = sa.select(t.host_runs.c.release_id, t.host_runs.c.host).where(
            t.host_runs.c.release_id.in_({rid for rid, _ in keys}))
        return {host for rid, host in conn.execute(query) if (rid, host) in keys}

    def reset_host_run(self, release_id: int, host: str, *, target_version: str, state: str,
                       target_dir: str | None = None) -> None:
        """Start the host over (a retry, a revert or a rollback pass): no done steps, no error, new target.
        What the last pre-check found is kept: it is the source of the undo until the next pre-check."""
        self._update_run_row(release_id, host, {
            "target_version": target_version, "target_dir": target_dir, "state": HostState(state).value,
            "done_steps": [], "step": None, "error": None, "attention": None, "started_at": None,
            "finished_at": None})

    def _update_run_row(self, release_id: int, host: str, values: dict[str, Any],
                        forget_attention: tuple[str, str] | None = None) -> None:
        """One host run's row; a new state is checked against core.state's host transitions in the same
        transaction."""
        key = _run_key(release_id, host)
        with self._write() as conn:
            if forget_attention is not None:
                self._clear_host_health(conn, *forget_attention, host)
            if "state" in values:
                query = sa.select(t.host_runs.c.state).where(*key)
                current = conn.execute(query.with_for_update() if self.is_postgres else query).scalar()
                if current is None:
                    raise StoreError(f"host {host} is not part of release #{release_id}")
                check_host_transition(host, HostState(current), HostState(values["state"]))
            done = conn.execute(sa.update(t.host_runs).where(*key).values(values)).rowcount
        if not done:
            raise StoreError(f"host {host} is not part of release #{release_id}")

    # ------------------------------------------------------------------ journal
    def journal(self, release_id: int, host: str | None, step: str, event: str,
                detail: dict[str, Any] | None = None) -> None:
        """Append one entry (one short transaction), signed with the writer's lease when fenced."""
        with self._write() as conn:
            self._journal_rows(conn, release_id, host, [(step, event, detail or {})])

    def _journal_rows(self, conn: sa.Connection, release_id: int, host: str | None,
                      entries: list[tuple[str, str, dict[str, Any]]]) -> None:
        """Entries (step, event, detail) in this order, in one statement."""
        conn.execute(INSERT_JOURNAL, [self._journal_row(release_id, host, step, event, detail)
                                        for step, event, detail in entries])

    def _journal_row(self, release_id: int, host: str | None, step: str, event: str,
                     detail: dict[str, Any]) -> dict[str, Any]:
        """One entry's values, signed with the writer's lease when fenced."""
        fence = self.fence
        return {"release_id": release_id, "host": host, "step": step, "event": event, "detail": detail,
                "at": self._now(), "owner": fence.owner if fence else None, "epoch": fence.epoch if fence else None}

    def journal_entries(self, release_id: int, host: str | None = None, since_id: int = 0, *,
                        steps: tuple[str, ...] | None = None, event: str | None = None,
                        shown: Shown | None = None) -> list[JournalEntry]:
        """Entries of a release in write order, optionally of one host, after entry ``since_id``, of some
        ``steps``, of one ``event`` and only those a view has ``shown`` (filtered in SQL: a summary or a progress
        view of 1000 hosts reads only the rows it needs)."""
        c = t.journal.c
        query = sa.select(t.journal).where(c.release_id == release_id, c.id > since_id).order_by(c.id)
        if host is not None:
            query = query.where(c.host == host)
        if steps is not None:
            query = query.where(c.step.in_(steps))
        if event is not None:
            query = query.where(c.event == event)
        if shown is not None:
            query = query.where(sa.or_(c.host.is_(None), c.event.in_(sorted(shown.events)),
                                       *(sa.and_(c.step == s, c.event == e) for s, e in sorted(shown.steps))))
        with self._read() as conn:
            return [journal_from_row(r) for r in conn.execute(query).mappings()]



def _run_key(release_id: int, host: str) -> tuple[sa.ColumnElement[bool], ...]:
    return (t.host_runs.c.release_id == release_id, t.host_runs.c.host == host)



