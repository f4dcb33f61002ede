"""Secrets at rest: guest access tokens are encrypted, invite tokens are only hashed.

Encryption uses Fernet (AES-128-CBC with HMAC-SHA256, from the ``cryptography`` package).
Keys come from ``GUESTGATE_TOKEN_KEYS`` (comma-separated Fernet keys, newest first, for
rotation); without it a key is derived from ``SECRET_KEY``.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from functools import cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings


class UndecryptableSecret(Exception):
    """A stored secret was encrypted with a key that is no longer configured."""


@cache
def _box(keys: tuple[str, ...], secret_key: str) -> MultiFernet:
    if not keys:
        derived = HKDF(
            algorithm=hashes.SHA256(), length=32, salt=None, info=b"guestgate token encryption"
        ).derive(secret_key.encode())
        keys = (base64.urlsafe_b64encode(derived).decode(),)
    return MultiFernet([Fernet(key) for key in keys])


def _current_box() -> MultiFernet:
    return _box(tuple(settings.GUESTGATE_TOKEN_KEYS), settings.SECRET_KEY)


def encrypt(plaintext: str) -> str:
    return _current_box().encrypt(plaintext.encode()).decode()


def decrypt(ciphertext: str) -> str:
    try:
        return _current_box().decrypt(ciphertext.encode()).decode()
    except InvalidToken:
        raise UndecryptableSecret(
            "stored secret cannot be decrypted with the configured keys"
        ) from None


def new_token(nbytes: int = 16) -> str:
    """A random URL-safe token; 16 bytes = 128 bits, 22 characters."""
    return secrets.token_urlsafe(nbytes)


def new_invite_token() -> str:
    """130 random bits as 26 lowercase letters and digits (base32): typable from a poster,
    read back case-insensitively and with or without the hyphens a poster may show."""
    return base64.b32encode(secrets.token_bytes(17)).decode().rstrip("=").lower()[:26]


def normalize_invite_token(typed: str) -> str:
    return typed.replace("-", "").replace(" ", "").lower()


def token_hash(token: str) -> str:
    """What is stored of a token: its SHA-256. Tokens are random, so no salt or slow hash."""
    return hashlib.sha256(token.encode()).hexdigest()
