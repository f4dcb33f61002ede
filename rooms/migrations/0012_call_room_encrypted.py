from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("rooms", "0011_join_request_announcement"),
    ]

    operations = [
        migrations.AddField(
            model_name="callroom",
            name="encrypted",
            field=models.BooleanField(default=False),
        ),
    ]
