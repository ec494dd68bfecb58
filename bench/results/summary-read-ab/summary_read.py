"""The journal read of the summary `release --wait` (and `status`) prints at the end: every entry of the release
(before) against only the `quiet` and `take_out` entries that finished (now), on a SQLite state database holding
a 1000-host release's journal as a healthy release writes it (the 20 entries per host of a 200-host lab release
on 2026-12-07, `begin`/`done` of each step, with small details).

    .venv/bin/python bench/results/summary-read-ab/summary_read.py [HOSTS] [ROUNDS]   # figures to summary_read.json

Each round reads both ways (order alternating), timed with this process's CPU clock; the reference is a bare
``SELECT id FROM journal WHERE release_id = ?`` through sqlite3 (the database's own floor for touching every row).
"""

from __future__ import annotations

import json
import sqlite3
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from graylift.store import Store

HERE = Path(__file__).parent
STEPS = [("precheck", ("begin", "done")), ("prestage", ("staged",)), ("stage", ("begin", "done")),
         ("mute", ("begin", "done")), ("take_out", ("begin", "done")), ("quiet", ("begin", "done")),
         ("stop", ("begin", "done")), ("switch", ("done",)), ("start", ("done",)), ("health", ("done",)),
         ("put_back", ("begin", "done")), ("unmute", ("begin", "done"))]


def detail(step: str, event: str) -> dict[str, object]:
    if (step, event) == ("quiet", "done"):
        return {"waited_seconds": 0.16, "ended_by": "drained"}
    if (step, event) == ("take_out", "done"):
        return {"out_of": ["haproxy:pyapp", "zookeeper:/dubbo"], "propagation_seconds": {"zookeeper:/dubbo": 1.0}}
    return {"version": "2.0.0", "seconds": 0.5} if event == "done" else {"version": "2.0.0"}


def main() -> None:
    hosts = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "state.db"
        store = Store.open(f"sqlite:///{db}")
        rec = store.create_release(app="pyapp", env="prod", kind="release", version="2.0.0",
                                   previous_version="1.0.0", plan={"batches": []}, config={},
                                   started_by="bench", host_runs=[])
        with store._write() as conn:
            for i in range(hosts):
                store._journal_rows(conn, rec.id, f"pyapp-{i:04d}",
                                    [(s, e, detail(s, e)) for s, events in STEPS for e in events])
        rows = len(store.journal_entries(rec.id))
        cpu = {"all": [], "summary": [], "reference": []}
        read = {"all": lambda: store.journal_entries(rec.id),
                "summary": lambda: store.journal_entries(rec.id, steps=("quiet", "take_out"), event="done")}
        conn = sqlite3.connect(db)
        for r in range(rounds):
            for way in ("all", "summary") if r % 2 == 0 else ("summary", "all"):
                t = time.process_time()
                got = read[way]()
                cpu[way].append(time.process_time() - t)
                assert len(got) == (rows if way == "all" else 2 * hosts)
            t = time.process_time()
            assert len(conn.execute("SELECT id FROM journal WHERE release_id = ?", (rec.id,)).fetchall()) == rows
            cpu["reference"].append(time.process_time() - t)
        conn.close()
        store.close()
    result = {"bench": "summary journal read", "date": datetime.now(UTC).isoformat(timespec="seconds"),
              "hosts": hosts, "rows_in_journal": rows, "rows_read": {"all": rows, "summary": 2 * hosts},
              "cpu_seconds": {k: [round(v, 4) for v in vs] for k, vs in cpu.items()},
              "x_reference": {k: [round(v / ref, 1) for v, ref in zip(cpu[k], cpu["reference"], strict=True)]
                              for k in ("all", "summary")}}
    (HERE / "summary_read.json").write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
