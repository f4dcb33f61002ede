"""Small readers of the environment that fail loudly.

Every setting GuestGate reads comes through here, so a typo in a variable's value stops the
process at start with the variable's name, instead of surfacing later as odd behaviour.
Secrets may be given as ``NAME_FILE`` (a path whose content is the value), as Docker and
Kubernetes secrets are mounted.
"""

from __future__ import annotations

import os
from pathlib import Path

_BASE_DIR = Path(__file__).resolve().parent.parent


def var_dir() -> Path:
    """Local state (SQLite file, embedded broker, local homeservers): ``GUESTGATE_VAR_DIR``."""
    return Path(env_str("GUESTGATE_VAR_DIR", str(_BASE_DIR / "var"))).resolve()


class ImproperlyConfiguredEnv(ValueError):
    """An environment variable holds a value GuestGate cannot use."""


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_str(name: str, default: str = "", *, strip: bool = True) -> str:
    value = os.environ.get(name, default)
    return value.strip() if strip else value


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfiguredEnv(f"{name}={raw!r} is not a boolean (use true or false)")


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ImproperlyConfiguredEnv(f"{name}={raw!r} is not a whole number") from None


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None:
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


def env_secret(name: str, default: str = "") -> str:
    """Read a secret from ``NAME`` or from the file named by ``NAME_FILE``."""
    file_name = os.environ.get(f"{name}_FILE")
    if file_name:
        path = Path(file_name)
        try:
            return path.read_text().strip()
        except OSError as exc:
            raise ImproperlyConfiguredEnv(f"{name}_FILE={file_name!r}: {exc.strerror}") from None
    return os.environ.get(name, default).strip()
