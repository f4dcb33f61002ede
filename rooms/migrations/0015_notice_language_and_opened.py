from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("rooms", "0014_link_audit_and_undo_rights"),
    ]

    operations = [
        migrations.AddField(
            model_name="callroom",
            name="notice_language",
            field=models.CharField(blank=True, max_length=16),
        ),
        migrations.AddField(
            model_name="waitingnotice",
            name="opened_ts",
            field=models.BigIntegerField(default=0),
        ),
        migrations.AddField(
            model_name="waitingnotice",
            name="digest",
            field=models.CharField(blank=True, max_length=64),
        ),
    ]
