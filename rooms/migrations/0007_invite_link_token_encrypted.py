"""Invite links keep their token encrypted, so their moderators can show them again.

Links made before have none: their pages say they cannot be shown again.
"""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("rooms", "0006_call_presence")]

    operations = [
        migrations.AddField(
            model_name="invitelink",
            name="token_encrypted",
            field=models.TextField(blank=True),
        ),
    ]
