"""The tests' flush survives a deadlock with a concurrent writer (tests/dbflush.py)."""

from __future__ import annotations

import threading

import psycopg
import pytest
from django.core.management import call_command
from django.db import connection

from tests.dbflush import retrying_deadlocks

pytestmark = pytest.mark.django_db(transaction=True)


def _flush() -> None:
    call_command("flush", verbosity=0, interactive=False, database="default")


def _writer_crossing_the_flush(tables: list[str], holding: threading.Event) -> None:
    """A push's transaction: holds the flush's last table, then wants its first one."""
    settings = connection.settings_dict
    with psycopg.connect(
        host=settings["HOST"] or "127.0.0.1",
        port=settings["PORT"] or 5432,
        user=settings["USER"],
        dbname=settings["NAME"],
        autocommit=False,
    ) as other:
        # PostgreSQL looks for a deadlock once, deadlock_timeout after a session starts to
        # wait, and aborts the session that finds it: make that the flush.
        other.execute("SET deadlock_timeout = '30s'")
        other.execute(f'LOCK TABLE "{tables[-1]}" IN ROW EXCLUSIVE MODE')
        holding.set()
        other.execute("SELECT pg_sleep(0.3)")  # the flush has taken the first table by now
        other.execute(f'LOCK TABLE "{tables[0]}" IN ROW EXCLUSIVE MODE')
        other.commit()


@pytest.mark.parametrize("retried", [False, True])
def test_a_flush_made_a_deadlocks_victim_is_tried_again(retried: bool) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("a PostgreSQL deadlock (CI runs the tests on PostgreSQL)")
    # The flush's TRUNCATE takes its tables in this order (the same call, the same process).
    tables = connection.introspection.django_table_names(only_existing=True)
    holding = threading.Event()
    writer = threading.Thread(target=_writer_crossing_the_flush, args=(tables, holding))
    writer.start()
    holding.wait(5)
    try:
        if retried:
            retrying_deadlocks(_flush)()
        else:
            with pytest.raises(Exception, match="couldn't be flushed") as refused:
                _flush()
            assert "deadlock" in str(refused.value.__cause__)
    finally:
        writer.join(10)
