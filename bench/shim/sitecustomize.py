"""Imported by the job's interpreter under `make bench` only (bench/run.py puts this folder on PYTHONPATH).

Snowflake answers a query request within about 45 s and the connector then polls for the result, so the
connector's 60 s socket read timeout never ends a long COPY there. fakesnow (the local emulator) answers
only when the statement has finished: a COPY INTO of 5M rows that takes longer than 60 s on this machine
fails with "Read timed out" although Snowflake would run it. The bench raises that client timeout for the
job processes it starts; glue_etl_job.py itself is unchanged.
"""

import os

_timeout = os.environ.get("BENCH_SNOWFLAKE_SOCKET_TIMEOUT")
if _timeout:
    import snowflake.connector.network as _network

    _network.DEFAULT_SOCKET_CONNECT_TIMEOUT = int(_timeout)
