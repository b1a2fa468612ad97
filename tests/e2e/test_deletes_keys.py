"""Hard deletes for a table keyed by several columns (issue 15 item 4), both source engines.

The key (region text, id int) is compared by its hash, as VERIFY compares it (``hashed_key_sql``): the keys
an INCREMENTAL target has not loaded yet are spread over every range there, so the ranges compare the
source's rows at or before the committed watermark and only the leaves read every source key. One load;
then the sources lose rows, gain rows and change one. 'delete' removes the deletes (INCREMENTAL), 'soft'
marks them (UPSERT), the guard refuses the table whose source was emptied, writing nothing; the new rows
cost nothing (no leaf of theirs) and a last, unchanged run one aggregate per side.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re

import pytest

import glue_etl_job as g
from tests.e2e import helpers as h

BASE = dt.datetime(2026, 3, 1, 9, 0, 0, 250000)
DDL = {"postgres": "region text, id int, v text, updated_at timestamp(6), PRIMARY KEY (region, id)",
       "mysql": "region VARCHAR(10), id INT, v VARCHAR(50), updated_at DATETIME(6), PRIMARY KEY (region, id)"}
PREFIX = {"postgres": "PG", "mysql": "MY"}
REGIONS = ("eu", "us", "é|x", "")
ROWS = [(r, i) for i in range(1, 11) for r in REGIONS]                   # 40 keys
HARD_GONE, SOFT_GONE = [("eu", 3), ("é|x", 7), ("", 1), ("us", 10)], [("us", 2), ("", 9), ("é|x", 5)]
CHANGED = ("us", 4)
NAMES = ("hard", "soft", "guard")
STEP = re.compile(r"step=deletes .*deletes=(\d+) target_rows=(\d+) ranges_queried=(\d+) leaves=(\d+)")


def registry(engine: str) -> dict:
    group = "AFFILIATE" if engine == "postgres" else "PROGRAM360"
    base = {"ssmKey": group, "primary_key": ["REGION", "ID"], "timestamp_column": "UPDATED_AT"}
    modes = {"hard": ("INCREMENTAL", "delete"), "soft": ("UPSERT", "soft"), "guard": ("INCREMENTAL", "delete")}
    return {f"dkeys.{n}": {**base, "operations": {"type": m}, "deletes": d,
                           "target_table": f"DKEYS.{PREFIX[engine]}_{n.upper()}"} for n, (m, d) in modes.items()}


def source_sql(engine: str, *sqls: str, params: list | None = None) -> None:
    h.source_sql(engine, "dkeys", *sqls, many=tuple(params) if params else None)


def source_rows(engine: str, name: str) -> list[tuple]:
    return h.source_rows(engine, "dkeys", name)


def target(engine: str, name: str) -> str:
    return f"ETL_DB.DKEYS.{PREFIX[engine]}_{name.upper()}"


def target_rows(engine: str, name: str, where: str = "TRUE") -> list[tuple]:
    return sorted(h.sf_query(f'SELECT "REGION", "ID", "V", "UPDATED_AT" FROM {target(engine, name)} WHERE {where}'))


def bucket(region: str, i: int) -> int:
    """The key's first-level range: the first bits of the MD5 of its canonical text ('2:eu|7'), one bucket of
    VERIFY_TOP_BUCKETS over the hashed key's span."""
    hashed = int(hashlib.md5(f"{len(region.encode())}:{region}|{i}".encode()).hexdigest()[:g.HASH_HEX_DIGITS], 16)
    return hashed // g.bucket_width(*g.HASHED_KEY_SPAN, g.VERIFY_TOP_BUCKETS)


def new_keys(count: int) -> list[tuple[str, int]]:
    """New keys whose first-level ranges hold target keys (and none of the keys deleted or changed): were they
    compared, each such range would differ and be looked into."""
    touched = {bucket(*k) for k in (*HARD_GONE, CHANGED)}
    held = {bucket(*k) for k in ROWS} - touched
    found = []
    for i in range(100, 10_000_000):
        region = REGIONS[i % len(REGIONS)]
        if bucket(region, i) in held - {bucket(*k) for k in found}:
            found.append((region, i))
            if len(found) == count:
                return found
    raise AssertionError("no such keys")


def ts(seconds: int) -> dt.datetime:
    return BASE + dt.timedelta(seconds=seconds)


def step_counts(proc, table: str) -> tuple[int, ...]:
    lines = [m.groups() for line in proc.stdout.splitlines() if f"table={table} " in line
             and (m := STEP.search(line))]
    assert len(lines) == 1, (table, lines, proc.stdout[-3000:])
    return tuple(int(v) for v in lines[0])


def run(tmp, engine: str, name: str):
    return h.run_job(tmp, registry(engine), job_name=f"e2e-dkeys-{PREFIX[engine]}-{name}")


def deleted(keys) -> tuple[str, list]:
    return "DELETE FROM dkeys.{t} WHERE region = %s AND id = %s", list(keys)


@pytest.fixture(scope="module", params=["postgres", "mysql"])
def runs(request, stack_env, tmp_path_factory):
    engine = request.param
    tmp = tmp_path_factory.mktemp(f"dkeys-{engine}")
    h.reset_target_schema("DKEYS")
    h.fresh_source_schema(engine, "dkeys", collation="utf8mb4_bin")      # keys compared byte by byte
    for name in NAMES:
        source_sql(engine, f"CREATE TABLE dkeys.{name} ({DDL[engine]})",
                   params=[f"INSERT INTO dkeys.{name} VALUES (%s, %s, %s, %s)",
                           [(r, i, f"v{r}{i}", ts(n)) for n, (r, i) in enumerate(ROWS)]])
    first = run(tmp, engine, "load")
    assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-2000:]
    out = {"engine": engine, "loaded": {name: target_rows(engine, name) for name in NAMES}}
    for name, gone in (("hard", HARD_GONE), ("soft", SOFT_GONE)):
        sql, keys = deleted(gone)
        source_sql(engine, params=[sql.format(t=name), keys])
    # new rows (after the watermark, in ranges that hold target keys) and one row changed: neither is a delete
    source_sql(engine, "DELETE FROM dkeys.guard",
               "UPDATE dkeys.hard SET v = 'changed', updated_at = '2026-03-03 00:00:00' WHERE region = 'us' AND id = 4",
               params=["INSERT INTO dkeys.hard VALUES (%s, %s, %s, %s)",
                       [(r, i, "new", ts(86_400 + n)) for n, (r, i) in enumerate(new_keys(5))]])
    out["second"] = run(tmp, engine, "deletes")
    out["soft_marked"] = sorted(h.sf_query(f'SELECT "REGION", "ID" FROM {target(engine, "soft")} '
                                           f'WHERE "_DELETED_AT" IS NOT NULL'))
    out["third"] = run(tmp, engine, "unchanged")
    return out


def test_delete_removes_the_source_deletes_of_a_composite_key(runs):
    engine, second = runs["engine"], runs["second"]
    result = h.summary(second)["dkeys.hard"]
    assert result["status"] == "OK", second.stdout[-3000:]
    assert result["deleted"] == len(HARD_GONE) and result["target_rows"] == 40 - len(HARD_GONE) + 5
    assert target_rows(engine, "hard") == source_rows(engine, "hard")
    found, rows, queried, leaves = step_counts(second, "dkeys.hard")
    # 40 target rows compared; the 5 new source rows, in 5 other ranges that hold target keys, make none of
    # them differ: at most one leaf per delete and one for the changed row (its updated_at moved past the
    # watermark)
    assert (found, rows) == (len(HARD_GONE), 40) and 1 <= leaves <= len(HARD_GONE) + 1, (queried, leaves)


def test_soft_marks_the_source_deletes_of_a_composite_key(runs):
    engine, second = runs["engine"], runs["second"]
    result = h.summary(second)["dkeys.soft"]
    assert result["status"] == "OK" and result["deleted"] == len(SOFT_GONE), second.stdout[-3000:]
    assert runs["soft_marked"] == sorted(SOFT_GONE)
    assert target_rows(engine, "soft", '"_DELETED_AT" IS NULL') == source_rows(engine, "soft")


def test_guard_refuses_an_emptied_source_before_fetching_a_key(runs):
    engine, second = runs["engine"], runs["second"]
    assert second.returncode == 1 and h.summary(second)["dkeys.guard"]["status"] == "FAILED"
    assert (f"dkeys.guard: at least 40 of the 40 rows of DKEYS.{PREFIX[engine]}_GUARD would be deleted (100.0%), "
            f"more than max_delete_fraction 0.1; nothing was written.") in second.stdout
    assert target_rows(engine, "guard") == runs["loaded"]["guard"]


def test_an_unchanged_key_set_costs_one_aggregate_per_side(runs):
    third = runs["third"]
    for name in ("hard", "soft"):
        assert h.summary(third)[f"dkeys.{name}"]["status"] == "OK", third.stdout[-3000:]
        assert step_counts(third, f"dkeys.{name}")[2:] == (1, 0)
    assert target_rows(runs["engine"], "hard") == source_rows(runs["engine"], "hard")
