"""GuestGate's root application error: a stable code, words for a person, an HTTP status.

Services raise these; views, API views and forms map them to responses in one place each.
"""

from __future__ import annotations


class GuestGateError(Exception):
    code = "guestgate.error"
    status = 400

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"
