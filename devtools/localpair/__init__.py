"""The local pair of Synapse homeservers, ``guest`` and ``main``, for ``make run`` and tests.

This module only describes a pair (ports, server names, tokens); it starts nothing and does not
import Django: ``use_local_pair`` runs before Django reads its settings (``devtools.settings``,
``tests.settings``). ``devtools.localpair.process`` runs a pair.

Two profiles exist so that the tests never touch the pair a developer is clicking around in:
``dev`` (GuestGate on :8000) and ``test`` (the test live server on :28499).
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from guestgate.env import var_dir

PROFILES: dict[str, tuple[int, int]] = {
    # profile: (port base, port GuestGate listens on for appservice pushes from main)
    "dev": (18000, 8000),
    "test": (28000, 28499),
}

GUEST_USER_PREFIX = "guest_"
BOT_LOCALPART = "guestgate"


@dataclass(frozen=True)
class LocalHomeserver:
    role: str  # "guest" or "main"
    directory: Path
    server_name: str  # "localhost:<federation port>": Synapse then skips .well-known and SRV
    federation_port: int  # TLS listener: federation is HTTPS only (MATRIX-LAB P1)
    client_port: int  # plain HTTP listener for the client-server and admin APIs
    as_token: str
    hs_token: str
    registration_shared_secret: str
    macaroon_secret_key: str
    form_secret: str

    @property
    def client_url(self) -> str:
        return f"http://127.0.0.1:{self.client_port}"


@dataclass(frozen=True)
class LocalPair:
    profile: str
    directory: Path
    guest: LocalHomeserver
    main: LocalHomeserver
    appservice_url: str  # where main pushes transactions: GuestGate itself
    rtc_focus_port: int  # devtools.rtcfocus: the call's JWT service (an lk-jwt-service look-alike)
    livekit_port: int  # its "LiveKit": accepts connections and stays silent (CALL-LAB §4)
    guest_user_prefix: str = GUEST_USER_PREFIX
    bot_localpart: str = BOT_LOCALPART

    @property
    def servers(self) -> tuple[LocalHomeserver, LocalHomeserver]:
        return (self.guest, self.main)

    @property
    def rtc_focus_url(self) -> str:
        return f"http://127.0.0.1:{self.rtc_focus_port}"

    @property
    def livekit_url(self) -> str:
        return f"ws://127.0.0.1:{self.livekit_port}"

    @property
    def admin_token_file(self) -> Path:
        """Where ``up`` keeps the token of a Synapse admin on the guest server (reconciliation)."""
        return self.guest.directory / "admin.token"

    def environment(self) -> dict[str, str]:
        """The environment variables that point GuestGate's settings at this pair."""
        return {
            "GUEST_HS_URL": self.guest.client_url,
            "GUEST_HS_SERVER_NAME": self.guest.server_name,
            "GUEST_AS_TOKEN": self.guest.as_token,
            "GUEST_USER_PREFIX": self.guest_user_prefix,
            "MAIN_HS_URL": self.main.client_url,
            "MAIN_HS_SERVER_NAME": self.main.server_name,
            "MAIN_AS_TOKEN": self.main.as_token,
            "MAIN_HS_TOKEN": self.main.hs_token,
            "MAIN_BOT_LOCALPART": self.bot_localpart,
            "GUESTGATE_PUBLIC_URL": self.appservice_url,
            "GUESTGATE_LIVEKIT_SERVICE_URLS": self.rtc_focus_url,
            "GUESTGATE_LIVEKIT_URLS": self.livekit_url,
        }


def use_local_pair(default_profile: str) -> LocalPair:
    """Make the pair of ``GUESTGATE_LOCAL_PAIR`` (else ``default_profile``) the default of
    GuestGate's homeserver settings: explicit variables still win. Call before Django reads
    its settings; processes started afterwards inherit the environment."""
    profile = os.environ.setdefault("GUESTGATE_LOCAL_PAIR", default_profile)
    pair = local_pair(profile, var_dir() / "homeservers")
    for name, value in pair.environment().items():
        os.environ.setdefault(name, value)
    return pair


def configured_pair() -> LocalPair:
    """The pair ``use_local_pair`` pointed this process's settings at."""
    profile = os.environ.get("GUESTGATE_LOCAL_PAIR")
    if not profile:
        raise LookupError("no local pair: run through python -m devtools (make run) or the tests")
    return local_pair(profile, var_dir() / "homeservers")


def local_pair(profile: str, root: Path) -> LocalPair:
    """Describe the pair of ``profile`` under ``root``, creating its secrets on first use.

    Ports can be moved with ``GUESTGATE_LOCAL_PORT_BASE`` (client ports are base+81/82,
    federation ports base+481/482, the call's focus base+83 and its silent LiveKit base+84)
    and ``GUESTGATE_LOCAL_APPSERVICE_PORT``.
    """
    if profile not in PROFILES:
        raise ValueError(f"unknown local pair profile {profile!r}; use one of {sorted(PROFILES)}")
    default_base, default_as_port = PROFILES[profile]
    base = int(os.environ.get("GUESTGATE_LOCAL_PORT_BASE") or default_base)
    as_port = int(os.environ.get("GUESTGATE_LOCAL_APPSERVICE_PORT") or default_as_port)
    directory = root / profile
    tokens = _load_or_create_secrets(directory)

    def server(role: str, offset: int) -> LocalHomeserver:
        federation_port = base + 480 + offset
        return LocalHomeserver(
            role=role,
            directory=directory / role,
            server_name=f"localhost:{federation_port}",
            federation_port=federation_port,
            client_port=base + 80 + offset,
            **tokens[role],
        )

    return LocalPair(
        profile=profile,
        directory=directory,
        guest=server("guest", 1),
        main=server("main", 2),
        appservice_url=f"http://127.0.0.1:{as_port}",
        rtc_focus_port=base + 83,
        livekit_port=base + 84,
    )


def _load_or_create_secrets(directory: Path) -> dict[str, dict[str, str]]:
    path = directory / "secrets.json"
    if path.exists():
        loaded: dict[str, dict[str, str]] = json.loads(path.read_text())
        return loaded
    fields = (
        "as_token",
        "hs_token",
        "registration_shared_secret",
        "macaroon_secret_key",
        "form_secret",
    )
    created = {role: {f: secrets.token_urlsafe(24) for f in fields} for role in ("guest", "main")}
    directory.mkdir(parents=True, exist_ok=True)
    # Written whole then renamed: web, worker and beat may start at the same moment.
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(created, indent=2))
    os.chmod(tmp, 0o600)
    try:
        os.link(tmp, path)  # first writer wins; a concurrent loser reads the winner's file
    except FileExistsError:
        pass
    finally:
        tmp.unlink()
    winner: dict[str, dict[str, str]] = json.loads(path.read_text())
    return winner
