"""The test suite's entry to GuestGate's one settings module (through ``devtools.settings``).

It only picks the local ``test`` homeserver pair (its own ports, so tests never touch the pair
of a running ``make run``) and a fixed secret key; everything else comes from the environment
exactly as in production (DATABASE_URL, CELERY_BROKER_URL).
"""

import os

os.environ.setdefault("GUESTGATE_LOCAL_PAIR", "test")
os.environ.setdefault("GUESTGATE_SECRET_KEY", "test-secret-key-not-for-production")
os.environ.setdefault("GUESTGATE_SECURE_COOKIES", "false")  # the test servers speak plain HTTP
# Every test guest comes from 127.0.0.1; tests of the limit itself lower it.
os.environ.setdefault("GUESTGATE_JOIN_RATE_PER_IP", "100000")
os.environ.setdefault("GUESTGATE_JOIN_REJECTED_RATE_PER_IP", "100000")
os.environ.setdefault("GUESTGATE_SIGNIN_RATE_PER_ACCOUNT", "100000")
os.environ.setdefault("GUESTGATE_SIGNIN_RATE_PER_IP", "100000")
# No spare accounts: the journey tests see every guest's registration (and its faults); the
# tests of spares turn them on.
os.environ.setdefault("GUESTGATE_SPARE_ACCOUNTS", "0")

from devtools.settings import *  # noqa: F403
from devtools.settings import DATABASES, VAR_DIR

# GuestGate's web server and Celery worker run as real processes in the integration tests, so
# the test database must be one they can open too: a file for SQLite, not memory.
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test-guestgate.sqlite3")}

# Set by the test run for the processes it starts: the database pytest-django created.
if _test_db := os.environ.get("GUESTGATE_TEST_DATABASE_NAME"):
    DATABASES["default"]["NAME"] = _test_db
