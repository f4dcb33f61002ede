"""PostgreSQL only: a commit that inserts or updates join requests sends
``NOTIFY guestgate_join_requests``, so long polls in every process wake at once (rooms/live.py,
rooms/dbsignal.py). One notification per statement, delivered only if the transaction commits.
"""

from django.db import migrations

CREATE = """
CREATE OR REPLACE FUNCTION guestgate_join_requests_changed() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('guestgate_join_requests', '');
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER guestgate_join_requests_changed
    AFTER INSERT OR UPDATE ON rooms_joinrequest
    FOR EACH STATEMENT EXECUTE FUNCTION guestgate_join_requests_changed();
"""
DROP = """
DROP TRIGGER IF EXISTS guestgate_join_requests_changed ON rooms_joinrequest;
DROP FUNCTION IF EXISTS guestgate_join_requests_changed();
"""


def _on_postgresql(sql: str):  # type: ignore[no-untyped-def]
    def run(apps, schema_editor):  # type: ignore[no-untyped-def]
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.execute(sql)

    return run


class Migration(migrations.Migration):
    dependencies = [("rooms", "0001_initial")]

    operations = [migrations.RunPython(_on_postgresql(CREATE), _on_postgresql(DROP))]
