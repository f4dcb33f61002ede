"""Developer tooling: the local homeserver pair, ``make run``'s process supervisor, the demo,
the embedded Celery broker. Production code never imports it (an import-linter contract)."""
