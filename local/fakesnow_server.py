"""Run the fakesnow server with two fidelity fixes, so the emulator behaves as Snowflake does.

1. Snowflake loads an enclosed empty field ("") as the empty string and an empty unenclosed field
as NULL (EMPTY_FIELD_AS_NULL = TRUE with FIELD_OPTIONALLY_ENCLOSED_BY). fakesnow 0.11.22 maps
COPY INTO onto DuckDB's read_csv, whose ``allow_quoted_nulls`` defaults to true and turns ""
into NULL as well - silently losing the difference the job's CSV contract depends on. The
   wrapper passes ``allow_quoted_nulls = false``.
2. fakesnow sends timestamps to the connector as Arrow structs without a null mask, so a NULL
   TIMESTAMP_NTZ/TZ value (stored correctly) reads back as 1970-01-01 (and MAX() over no rows
   as the epoch). The wrapper adds the mask.

Otherwise it runs fakesnow's own CLI unchanged.

Usage (from local/stack.py): python -m local.fakesnow_server -s --host 127.0.0.1 -p PORT
"""

from __future__ import annotations

import sys

import pyarrow as pa
import pyarrow.compute as pc
from fakesnow import arrow, copy_into
from fakesnow.cli import main


def _patch_read_csv() -> None:
    original = copy_into.ReadCSV.read_expression

    def read_expression(self, url):
        expr = original(self, url)
        if self.quote:
            expr.append("expressions", self.make_eq("allow_quoted_nulls", False))
        return expr

    copy_into.ReadCSV.read_expression = read_expression


def _patch_null_timestamps() -> None:
    original = arrow.timestamp_to_sf_struct

    def timestamp_to_sf_struct(ts):
        out = original(ts)
        if isinstance(ts, pa.ChunkedArray):
            ts = ts.combine_chunks()
        if ts.null_count == 0:
            return out
        children = [pc.fill_null(out.field(i), 0) for i in range(out.type.num_fields)]
        return pa.StructArray.from_arrays(children, fields=list(out.type), mask=ts.is_null())

    arrow.timestamp_to_sf_struct = timestamp_to_sf_struct


if __name__ == "__main__":
    _patch_read_csv()
    _patch_null_timestamps()
    sys.exit(main(sys.argv[1:]))
