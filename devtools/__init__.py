"""Developer tooling: the local homeserver pair, ``make run``'s process supervisor, the demo,
the embedded Celery broker, the guest's and moderator's browser of the tests and the bench.
Production code never imports it (an import-linter contract)."""
