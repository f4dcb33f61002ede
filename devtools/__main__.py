"""``python -m devtools <command>``: Django's manage.py with the local homeserver pair.

``make run`` is ``python -m devtools devstack``; any other command works too, e.g.
``python -m devtools createsuperuser`` or ``python -m devtools homeservers status``.
"""

import os
import sys

from django.core.management import execute_from_command_line

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "devtools.settings")
    execute_from_command_line(["python -m devtools", *sys.argv[1:]])
