from datetime import timedelta

from django.db import migrations


def create_default_policy(apps, schema_editor):
    RetentionPolicy = apps.get_model("accounts", "RetentionPolicy")
    if not RetentionPolicy.objects.filter(is_default=True).exists():
        RetentionPolicy.objects.create(
            name="Standard",
            is_default=True,
            account_lifetime=timedelta(hours=24),
            idle_timeout=None,
            erase_on_expiry=True,
            return_window=timedelta(hours=12),
            record_retention=timedelta(days=30),
            displayname_suffix=" (Guest)",
        )


class Migration(migrations.Migration):
    dependencies = [("accounts", "0001_initial")]

    operations = [migrations.RunPython(create_default_policy, migrations.RunPython.noop)]
