"""The table registry: which source tables the job loads into Snowflake, and how.

Edit ``TABLES`` below. Every entry is keyed ``"namespace.table"``: the source table,
where *namespace* is the PostgreSQL schema or the MySQL database it lives in.
The job validates the whole registry before it runs anything and lists every problem
at once, so a typo never half-runs a job.

Keys of an entry
----------------
ssmKey            required. The connection group: the runtime argument (``--AFFILIATE``,
                  ``--PROGRAM360``, ``--OPS``) whose value is the SSM path of the source's
                  credentials.
target_table      required. ``SCHEMA.TABLE`` in Snowflake (upper-cased). Created when missing.
operations        required. ``{"type": MODE, "truncate_before_insert": False}``; MODE is one of
                    FULL             replace the target's contents and definition (atomic swap)
                    TRUNCATE_INSERT  keep the target's definition, replace its contents
                    INCREMENTAL      load rows beyond the watermark and merge them on the
                                     primary key (append when there is none);
                                     ``truncate_before_insert: True`` replaces the target
                                     with the delta instead
                    UPSERT           read every row, merge on the primary key
                    APPEND           read every row, insert it, no checks
primary_key       a column or a list of columns; required by UPSERT, used by INCREMENTAL.
timestamp_column  the column INCREMENTAL compares with the watermark (maintained on every
                  update at the source). Without it INCREMENTAL uses a one-column numeric
                  primary key and only sees new rows, not updates.
lookback_seconds  INCREMENTAL re-reads this many seconds before the watermark, to catch rows
                  committed late by long transactions (the key-based merge keeps it idempotent).
null_timestamps   rows whose timestamp_column is NULL: "include" (default: always read and
                  merged again), "exclude" (never loaded, counted in the log) or "fail".
columns           a subset of source columns to load (must include the keys).
partition_column  a numeric/date/timestamp column to split large reads on; defaults to a
num_partitions    one-column numeric primary key, with one partition per 500k rows up to the
                  cores available. Set num_partitions to force a number. Each partition reads
                  one range of the column's MIN..MAX (the first also its NULLs): the job log's
                  extract line shows them as split=[...].
fetch_size        JDBC fetch size (rows per round trip), default 10000.
count_source      INCREMENTAL counts the whole source table (default True) so that the summary,
                  the SourceRecordCount metric and the diff column compare it with the target;
                  that count reads the whole table (an index-only scan at best). False keeps an
                  incremental run in proportion to its delta; the source count is then "-".
verify            True: after each load, compare the target with the source by primary-key
                  ranges (VERIFY, README "VERIFY"); the table's status is DRIFT when a key is
                  missing, extra or different (each logged). Any primary key: one integer
                  column is compared by key ranges, any other key by ranges of its hash.
deletes           INCREMENTAL/UPSERT only: what a row deleted at the source does to the target.
                  "ignore" (default): nothing. "delete": removed. "soft": kept, its _DELETED_AT
                  (TIMESTAMP_TZ, added to the target) stamped; a key read again is live again.
                  Found by comparing key sets by key range (README "Deletes"); any primary_key
                  (one integer column by its values, any other by its hash). Applied in the load's
                  transaction, counted as RowsDeleted.
max_delete_fraction  the guard of 'deletes' and of REPAIR (default 0.1): a run that would delete
                  more than this share of the target's rows fails before anything is written (an
                  empty or partial source read never wipes a target). Raise it (up to 1.0) for a
                  run that purges.
transform         a function defined in this file that takes and returns a Spark DataFrame;
                  it runs after the read and before staging (e.g. derive or rename columns).
                  It sees typed values, so PostgreSQL numeric, date and timestamp columns are
                  then decoded by Spark instead of staged as the server's text (about 30% more
                  CPU on large tables; a view at the source avoids that), and dates and
                  timestamps before 1582-10-15 may arrive shifted (docs/GUARANTEES.md).

Column names are matched case-insensitively; Snowflake columns are the upper-cased source names.
The runtime argument ``--OBJ '{"sales.orders": "FULL;_REBUILD"}'`` overrides a table's mode for
one run and optionally suffixes its target name (RAW.ORDERS_REBUILD).
A JSON file with the same structure (``{"TABLES": {...}}``, without transforms) can replace this
module: pass ``--CONFIG path/or/s3://uri.json``.
"""

TABLES = {
    # --- AFFILIATE: PostgreSQL database "affiliate" --------------------------------------
    "sales.orders": {
        "ssmKey": "AFFILIATE",
        "target_table": "RAW.ORDERS",
        "primary_key": "ID",
        "timestamp_column": "UPDATED_AT",
        "lookback_seconds": 0,
        "operations": {"type": "INCREMENTAL", "truncate_before_insert": False},
    },
    "sales.order_lines": {
        "ssmKey": "AFFILIATE",
        "target_table": "RAW.ORDER_LINES",
        "primary_key": ["ORDER_ID", "LINE_NO"],
        "timestamp_column": "UPDATED_AT",
        "operations": {"type": "UPSERT"},
    },
    "sales.customers": {
        "ssmKey": "AFFILIATE",
        "target_table": "RAW.CUSTOMERS",
        "primary_key": "ID",
        "operations": {"type": "FULL"},
    },
    # --- OPS: PostgreSQL database "ops" -------------------------------------------------
    "ops.tickets": {
        "ssmKey": "OPS",
        "target_table": "RAW.TICKETS",
        "primary_key": "ID",
        "operations": {"type": "TRUNCATE_INSERT"},
    },
    # --- PROGRAM360: MySQL/MariaDB database "program360" --------------------------------
    "program360.members": {
        "ssmKey": "PROGRAM360",
        "target_table": "RAW.MEMBERS",
        "primary_key": "ID",
        "timestamp_column": "UPDATED_AT",
        "operations": {"type": "INCREMENTAL"},
    },
    "program360.events": {
        "ssmKey": "PROGRAM360",
        "target_table": "RAW.EVENTS",
        "operations": {"type": "APPEND"},
    },
}
