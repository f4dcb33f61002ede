"""GuestGate's web server in the benchmarks: ``manage.py runserver`` with gunicorn's listen
backlog (2048) instead of runserver's 10.

With a backlog of 10, a burst of new connections (500 guests submitting at once: httpx, like a
browser, opens new connections once its idle ones expired) overflowed the accept queue, and
about 1 in 10 guests got "connection reset by peer" from the kernel before GuestGate saw the
request. That measures the development server, not GuestGate; production runs gunicorn.

    python -m bench.webserver 127.0.0.1:48499 --noreload ...   (arguments as for runserver)
"""

import os
import sys

from django.core.management import execute_from_command_line
from django.core.servers import basehttp

#: gunicorn's default ``--backlog``.
LISTEN_BACKLOG = 2048

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    basehttp.WSGIServer.request_queue_size = LISTEN_BACKLOG
    execute_from_command_line(["manage.py", "runserver", *sys.argv[1:]])
