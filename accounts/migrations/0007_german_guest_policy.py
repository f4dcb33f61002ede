"""A policy for German-speaking calls: guests are marked " (Gast)" there.

Made like the default policy (the same durations), not the default itself; admins choose it
for a room (the room's settings) or a link. Created only where no policy has that name.
"""

import contextlib

from django.db import migrations, models
from django.db.models import ProtectedError

NAME = "Deutsch"


def create_german_policy(apps, schema_editor):
    RetentionPolicy = apps.get_model("accounts", "RetentionPolicy")
    if RetentionPolicy.objects.filter(name=NAME).exists():
        return
    model = RetentionPolicy.objects.filter(is_default=True).first()
    copied = {}
    if model is not None:
        copied = {
            field: getattr(model, field)
            for field in (
                "account_lifetime",
                "idle_timeout",
                "left_call_timeout",
                "erase_on_expiry",
                "return_window",
                "record_retention",
                "max_guests_per_room",
            )
        }
    RetentionPolicy.objects.create(
        name=NAME, is_default=False, displayname_suffix=" (Gast)", **copied
    )


def remove_unused_german_policy(apps, schema_editor):
    RetentionPolicy = apps.get_model("accounts", "RetentionPolicy")
    # A room or a link that still names it keeps it.
    with contextlib.suppress(ProtectedError):
        RetentionPolicy.objects.filter(name=NAME, is_default=False, accounts__isnull=True).delete()


class Migration(migrations.Migration):
    dependencies = [("accounts", "0006_left_call_timeout")]

    operations = [
        migrations.AlterField(
            model_name="retentionpolicy",
            name="displayname_suffix",
            field=models.CharField(
                blank=True,
                default=" (Guest)",
                help_text='Added to every guest\'s display name, others see it in the call: e.g. " (Guest)", or " (Gast)" for German-speaking calls.',
                max_length=32,
            ),
        ),
        migrations.RunPython(create_german_policy, remove_unused_german_policy),
    ]
