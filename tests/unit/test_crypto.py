"""Guest access tokens are encrypted at rest; keys can be rotated."""

from __future__ import annotations

from typing import Any

import pytest
from cryptography.fernet import Fernet

from guestgate.crypto import UndecryptableSecret, decrypt, encrypt


def test_a_token_is_stored_encrypted_and_read_back() -> None:
    stored = encrypt("syt_Z3Vlc3Q_secret")

    assert "syt_" not in stored and "secret" not in stored
    assert decrypt(stored) == "syt_Z3Vlc3Q_secret"


def test_a_rotated_key_still_reads_old_tokens(settings: Any) -> None:
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.GUESTGATE_TOKEN_KEYS = [old]
    stored = encrypt("syt_old")

    settings.GUESTGATE_TOKEN_KEYS = [new, old]

    assert decrypt(stored) == "syt_old"


def test_a_token_under_a_removed_key_is_a_clear_error(settings: Any) -> None:
    settings.GUESTGATE_TOKEN_KEYS = [Fernet.generate_key().decode()]
    stored = encrypt("syt_gone")
    settings.GUESTGATE_TOKEN_KEYS = [Fernet.generate_key().decode()]

    with pytest.raises(UndecryptableSecret):
        decrypt(stored)
