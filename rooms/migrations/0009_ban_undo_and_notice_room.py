"""A ban can be undone (a new audit action); a call room's waiting notice may go to another
Matrix room."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("rooms", "0008_waiting_notice"),
    ]

    operations = [
        migrations.AlterField(
            model_name="auditentry",
            name="action",
            field=models.CharField(
                choices=[
                    ("knocked", "asked to join"),
                    ("approved", "let in"),
                    ("denied", "denied"),
                    ("banned", "denied and banned"),
                    ("ban_undone", "ban undone"),
                    ("joined", "joined"),
                    ("cancelled", "cancelled"),
                    ("failed", "failed"),
                    ("expired", "expired"),
                    ("removed", "removed from the call"),
                ],
                max_length=16,
            ),
        ),
        migrations.AddField(
            model_name="callroom",
            name="notice_room_id",
            field=models.CharField(blank=True, max_length=255),
        ),
        migrations.AddField(
            model_name="waitingnotice",
            name="in_room",
            field=models.CharField(blank=True, max_length=255),
        ),
    ]
