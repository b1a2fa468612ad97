"""Fixtures of the end-to-end suites: which JDBC driver the job uses for MySQL sources.

The job's MySQL secret (/etl/local/program360) names no driver, so the job's default applies:
MySQL Connector/J 8.0.33, as AWS Glue 5.0 ships it. ``local.seed`` also writes a "-mariadb"
variant of it that names MariaDB Connector/J. A test (or a module fixture) that requests
``mysql_driver`` runs the job with the driver it is parametrized with (``h.BOTH_MYSQL_DRIVERS``);
unparametrized, it is Connector/J, in the same fixture instance as the tests that do not ask.
"""

from __future__ import annotations

import pytest

from tests.e2e import helpers as h


@pytest.fixture(scope="module")
def mysql_driver(request):
    """None (the job's default: MySQL Connector/J) or "mariadb"; selects --PROGRAM360's secret."""
    name = getattr(request, "param", None)
    h.use_mysql_driver(name)
    yield name
    h.use_mysql_driver(None)
