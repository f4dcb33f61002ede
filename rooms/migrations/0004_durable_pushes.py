"""Pushes are deduplicated by event, not by transaction id, and applied by a task that marks
each event applied. Events stored before were applied when they arrived."""

from django.db import migrations, models
from django.db.models import F


def mark_stored_events_applied(apps, schema_editor):
    MembershipEvent = apps.get_model("rooms", "MembershipEvent")
    MembershipEvent.objects.update(applied_at=F("received_at"))


class Migration(migrations.Migration):
    dependencies = [
        ("rooms", "0003_join_request_reason_code"),
    ]

    operations = [
        migrations.AlterField(
            model_name="appservicetransaction",
            name="txn_id",
            field=models.CharField(max_length=255),
        ),
        migrations.AddField(
            model_name="membershipevent",
            name="applied_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="membershipevent",
            name="apply_attempts",
            field=models.PositiveSmallIntegerField(default=0),
        ),
        migrations.AddField(
            model_name="membershipevent",
            name="apply_error",
            field=models.TextField(blank=True),
        ),
        migrations.RunPython(mark_stored_events_applied, migrations.RunPython.noop),
        migrations.AddIndex(
            model_name="membershipevent",
            index=models.Index(
                condition=models.Q(applied_at__isnull=True),
                fields=["id"],
                name="membership_event_unapplied",
            ),
        ),
    ]
