"""Schema migrations on a lab with a real PostgreSQL and Flyway-style SQL files (V<n>__<what>.sql applied in
order, each once, recorded in a history table by a small Flyway-like runner): the expand migration goes out
with 1.0.0, the contract one with 2.0.0; the rollback to 1.0.0 is refused until a reason is given."""

from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from graylift.core.state import ReleaseState
from graylift.errors import PlanError
from graylift.lab import LabInfo
from graylift.service import Graylift
from tests.e2e.conftest import Deploy, lab_fixture, make_deploy, settled

pytestmark = [pytest.mark.root, pytest.mark.lab, pytest.mark.slow, pytest.mark.postgres]

APP = "pyapp"
lab = lab_fixture(APP, hosts=4, name=f"mg{os.getpid() % 10000}")

SQL = {
    "V1__create_orders.sql": "CREATE TABLE orders (id integer PRIMARY KEY, total numeric NOT NULL);",
    "V2__add_amount.sql": "ALTER TABLE orders ADD COLUMN amount_cents bigint; "  # expand: both shapes work
                          "UPDATE orders SET amount_cents = (total * 100)::bigint;",
    "V3__drop_total.sql": "ALTER TABLE orders DROP COLUMN total;",  # contract: 1.0.0 reads total
}
# What a Flyway run does, in a few lines: apply each pending V<n>__*.sql up to the app version's schema
# version, in order, in a transaction with its history row.
RUNNER = r"""set -eu
dir=$1; target=$(awk -v v="$2" '$1 == v {print $2}' "$dir/schema-versions")
[ -n "$target" ] || { echo "no schema version for app version $2" >&2; exit 2; }
export PGOPTIONS="-c client_min_messages=warning"
q() { psql -X -q -v ON_ERROR_STOP=1 -d "$DB" "$@"; }
q -c "CREATE TABLE IF NOT EXISTS flyway_schema_history (version int PRIMARY KEY, script text NOT NULL,
      installed_on timestamptz NOT NULL DEFAULT now())"
for f in $(ls "$dir" | grep -E '^V[0-9]+__.*\.sql$' | sort -t_ -k1.2n); do
  n=${f%%__*}; n=${n#V}
  [ "$n" -le "$target" ] || continue
  done=$(q -tA -c "SELECT 1 FROM flyway_schema_history WHERE version = $n")
  [ -z "$done" ] || continue
  { echo "BEGIN;"; cat "$dir/$f"; echo "INSERT INTO flyway_schema_history (version, script) VALUES ($n, '$f');";
    echo "COMMIT;"; } | q
  echo "applied $f"
done
"""


def psql(db: str, sql: str) -> str:
    return subprocess.run(["psql", "-X", "-tA", "-v", "ON_ERROR_STOP=1", "-d", db, "-c", sql], check=True,
                          capture_output=True, text=True).stdout.strip()


def test_expand_then_contract_and_the_rollback_across_it(lab: LabInfo, tmp_path: Path, pg_databases: Any) -> None:
    name = pg_databases.create().rsplit("/", 1)[1]
    db = f"host=127.0.0.1 user=postgres dbname={name}"
    migrations = tmp_path / "migrations"
    migrations.mkdir()
    for file, sql in SQL.items():
        (migrations / file).write_text(sql + "\n")
    (migrations / "schema-versions").write_text("1.0.0 2\n2.0.0 3\n")
    (tmp_path / "migrate.sh").write_text(RUNNER)
    d: Deploy = make_deploy(lab, APP, tmp_path, canary={"group": "beta", "count": 1, "bake": 0, "promote": "auto"},
                            batch={"size": 1})
    data = yaml.safe_load(d.config.read_text())
    data["apps"][APP]["migration"] = {"command": f"sh {tmp_path}/migrate.sh {migrations} {{version}}",
                                      "timeout": 60}
    d.config.write_text(yaml.safe_dump(data, sort_keys=False))
    d.gl.close()
    d.gl = gl = Graylift(d.config)
    os.environ["DB"] = db  # the runner's connection, from the controller's environment (never in the config)
    try:
        def release(version: str, kind: str) -> int:
            rec = asyncio.run(gl.start_release(APP, "prod", version, started_by="ann", migration=kind))
            settled(asyncio.run(gl.engine().drive(rec.id)), ReleaseState.SUCCEEDED)
            return rec.id

        first = release("1.0.0", "expand")
        assert psql(db, "SELECT string_agg(version::text, ',' ORDER BY version) FROM flyway_schema_history") == "1,2"
        psql(db, "INSERT INTO orders (id, total, amount_cents) VALUES (1, 9.99, 999)")
        contract = release("2.0.0", "contract")
        assert psql(db, "SELECT string_agg(version::text, ',' ORDER BY version) FROM flyway_schema_history") \
            == "1,2,3"
        assert psql(db, "SELECT count(*) FROM information_schema.columns WHERE table_name = 'orders' "
                        "AND column_name = 'total'") == "0"
        done = [e.detail for e in gl.store.journal_entries(contract) if e.step == "migration" and e.event == "done"]
        assert done == [{"kind": "contract", "output": "applied V3__drop_total.sql\n"}]
        assert [e.detail["kind"] for e in gl.store.journal_entries(first) if e.event == "done"
                and e.step == "migration"] == ["expand"]

        with pytest.raises(PlanError, match=rf"crosses the contract migration of release #{contract} \(2\.0\.0\)"):
            asyncio.run(gl.start_rollback(APP, "prod", to_version=None, started_by="ann"))
        assert set(d.versions().values()) == {"2.0.0"}  # refused: nothing touched
        back = asyncio.run(gl.start_rollback(APP, "prod", to_version=None, started_by="ann",
                                             override_migration="total restored by ops from amount_cents"))
        settled(asyncio.run(gl.engine().drive(back.id)), ReleaseState.SUCCEEDED)
        assert set(d.versions().values()) == {"1.0.0"}
        d.assert_fleet_clean()
        overrides = [e.detail for e in gl.store.journal_entries(back.id) if e.step == "migration"]
        assert overrides == [{"reason": "total restored by ops from amount_cents", "by": "ann",
                              "crossed": [contract]}]
    finally:
        os.environ.pop("DB", None)
        gl.close()
