"""Run the fakesnow server with one fidelity fix, so the emulator loads CSV as Snowflake does.

Snowflake loads an enclosed empty field ("") as the empty string and an empty unenclosed field
as NULL (EMPTY_FIELD_AS_NULL = TRUE with FIELD_OPTIONALLY_ENCLOSED_BY). fakesnow 0.11.22 maps
COPY INTO onto DuckDB's read_csv, whose ``allow_quoted_nulls`` defaults to true and turns ""
into NULL as well - silently losing the difference the job's CSV contract depends on. This
wrapper passes ``allow_quoted_nulls = false`` and otherwise runs fakesnow's own CLI unchanged.

Usage (from local/stack.py): python -m local.fakesnow_server -s --host 127.0.0.1 -p PORT
"""

from __future__ import annotations

import sys

from fakesnow import copy_into
from fakesnow.cli import main


def _patch_read_csv() -> None:
    original = copy_into.ReadCSV.read_expression

    def read_expression(self, url):
        expr = original(self, url)
        if self.quote:
            expr.append("expressions", self.make_eq("allow_quoted_nulls", False))
        return expr

    copy_into.ReadCSV.read_expression = read_expression


if __name__ == "__main__":
    _patch_read_csv()
    sys.exit(main(sys.argv[1:]))
