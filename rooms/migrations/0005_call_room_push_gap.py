from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("rooms", "0004_durable_pushes"),
    ]

    operations = [
        migrations.AddField(
            model_name="callroom",
            name="push_gap_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="callroom",
            name="push_gap_events",
            field=models.PositiveIntegerField(default=0),
        ),
        migrations.AddField(
            model_name="callroom",
            name="push_gap_seconds",
            field=models.PositiveIntegerField(default=0),
        ),
    ]
