"""GuestGate's log lines: plain for people at a terminal, JSON for log collectors, never secrets.

``LOGGING`` in settings attaches the filters here to the console handler, so they see every
record that is written, whichever logger it came from (a filter on a logger sees only the
records logged to that very logger, not those its children pass up). Celery workers and beat
use the same configuration instead of Celery's own (``use_django_logging_in_celery``).
"""

from __future__ import annotations

import json
import logging
import logging.config
import re
from datetime import UTC, datetime
from typing import Any

from celery import signals
from django.conf import settings

REDACTED = "…"

# (pattern, replacement): what may never reach a log line, and what stands in its place.
_SECRETS: tuple[tuple[re.Pattern[str], str], ...] = (
    # Synapse access and refresh tokens (syt_/syr_), MAS tokens (mat_).
    (re.compile(r"\b(syt|syr|mat)_[A-Za-z0-9_-]{8,}"), rf"\1_{REDACTED}"),
    # A token in a query string (old clients and careless proxies put it there) or JSON.
    (re.compile(r"(access_token=)[^&\s\"']+", re.IGNORECASE), rf"\1{REDACTED}"),
    (re.compile(r"(\"access_token\"\s*:\s*\")[^\"]*", re.IGNORECASE), rf"\1{REDACTED}"),
    (re.compile(r"(\bBearer\s+)[^\s\"',]+", re.IGNORECASE), rf"\1{REDACTED}"),
    # Invite links: whoever reads the log could join with the token (runserver logs paths).
    (re.compile(r"(/j/)[^\s/?#\"']+"), rf"\1{REDACTED}"),
)


def redact(text: str) -> str:
    """``text`` without anything that looks like an access token or an invite link's token."""
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    return text


class RedactSecretsFilter(logging.Filter):
    """Replace tokens in a record's message and traceback before any handler writes it."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # a broken format string: logging reports it itself
            return True
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, ()
        if record.exc_info and not record.exc_text:
            # Formatters reuse exc_text, so the traceback is formatted (and cleaned) once here.
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC), level, logger, request_id, message[, exception]."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "request_id": getattr(record, "request_id", "-"),
            "message": record.getMessage(),
        }
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def _configure_from_settings(**kwargs: Any) -> None:
    logging.config.dictConfig(settings.LOGGING)


def use_django_logging_in_celery() -> None:
    """Workers and beat log like the web process: same format, request ids, redaction, and
    level (``GUESTGATE_LOG_LEVEL``; Celery's ``--loglevel`` is not used)."""
    signals.setup_logging.connect(_configure_from_settings, weak=False)
