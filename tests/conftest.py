"""Shared pytest fixtures for the local stack (local/stack.py).

The stack is started here if needed but never stopped: `make test` stops it afterwards, and a
developer may keep it running between pytest runs (`make stack-up`).
"""

from __future__ import annotations

import pytest

from local import seed as local_seed  # the repo root is on sys.path: pytest.ini's pythonpath
from local import stack as local_stack


@pytest.fixture(scope="session")
def stack():
    """The running local stack: starts it (idempotent) and exports its environment for the session.

    Yields the environment dict (AWS_ENDPOINT_URL, JAVA_HOME, ETL_SPARK_JARS, ports, ...).
    """
    local_stack.up()
    env = local_stack.env()
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        yield env


@pytest.fixture(scope="session")
def stack_env(stack):
    """`stack`, seeded once per session (source databases, SSM parameters, bucket, ETL_DB)."""
    local_seed.seed()
    return stack
