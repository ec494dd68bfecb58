"""The statements the engine runs for every step of every host (``store/runs.py``), built once and bound by
name when executed."""

from __future__ import annotations

import sqlalchemy as sa

from graylift.store.tables import host_runs, journal, releases

_id: sa.BindParameter[int] = sa.bindparam("id")
_rid: sa.BindParameter[int] = sa.bindparam("b_rid")
_host: sa.BindParameter[str] = sa.bindparam("b_host")
RUN_KEY = (host_runs.c.release_id == _rid, host_runs.c.host == _host)
GET_RELEASE = sa.select(releases).where(releases.c.id == _id)
GET_LEASE = sa.select(releases.c.owner, releases.c.lease_epoch).where(releases.c.id == _id)
GET_REQUESTED = sa.select(releases.c.requested).where(releases.c.id == _id)
GET_RUN = sa.select(host_runs).where(*RUN_KEY)
GET_RUNS = sa.select(host_runs).where(host_runs.c.release_id == _rid).order_by(host_runs.c.batch, host_runs.c.host)
SET_RUN_STEP = sa.update(host_runs).where(*RUN_KEY).values(step=sa.bindparam("b_step"))
INSERT_JOURNAL = sa.insert(journal)
FINISH_STEP = sa.update(host_runs).where(*RUN_KEY).values(done_steps=sa.bindparam("b_done"),
                                                           step=sa.bindparam("b_step"))
FINISH_PRECHECK = FINISH_STEP.values(found=sa.bindparam("b_found"), previous_version=sa.bindparam("b_previous"))
