"""GuestGate's one settings module, pointed at the local homeserver pair: for ``make run``.

``python -m devtools <command>`` uses it (``make run`` is ``python -m devtools devstack``): the
local pair's URLs and tokens become environment defaults (explicit variables still win), the
developer commands (``devstack``, ``homeservers``, ``seed_demo``) are installed, and the
embedded Celery broker writes its messages atomically. ``tests.settings`` builds on it.
"""

import warnings

from celery.exceptions import SecurityWarning

from devtools.embedded_broker import use_safe_filesystem_transport
from devtools.localpair import use_local_pair

_PAIR = use_local_pair("dev")

from guestgate.settings import *  # noqa: E402, F403
from guestgate.settings import GUEST_ADMIN_TOKEN, INSTALLED_APPS  # noqa: E402

INSTALLED_APPS = [*INSTALLED_APPS, "devtools"]
if not GUEST_ADMIN_TOKEN:
    GUEST_ADMIN_TOKEN_FILE = str(_PAIR.admin_token_file)  # made by `homeservers up`
# filesystem:// means the embedded broker with its atomic put, in every process (web, worker
# and beat read this module), whichever broker the settings chose.
use_safe_filesystem_transport()
# The development machines run everything as root, and a Celery worker warns of that at each
# start (it reads these settings just before): not a problem of a stack on one's own machine,
# so not said there. Only this warning, and only here: production settings keep it.
warnings.filterwarnings(
    "ignore",
    message="You're running the worker with superuser privileges",
    category=SecurityWarning,
)
