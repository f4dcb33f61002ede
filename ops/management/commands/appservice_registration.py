"""``manage.py appservice_registration guest|main``: GuestGate's registration for a real Synapse.

Prints the appservice registration file to list in the homeserver's
``app_service_config_files``, with fresh random tokens, and on standard error the lines
GuestGate's environment needs to match it. Tokens go to the terminal (or ``--out``) only,
never to a log. The shape is the local pair's (``devtools/localpair/config.py``), which the
test suite runs against real Synapse servers.

Spec: https://spec.matrix.org/v1.16/application-service-api/#registration
"""

from __future__ import annotations

import os
import re
import secrets
from argparse import ArgumentParser
from pathlib import Path
from typing import Any

import yaml
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

#: The registration ids, as the local pair names them (the main one is MAIN_APPSERVICE_ID).
GUEST_APPSERVICE_ID = "guestgate-guests"


def new_token() -> str:
    """A fresh random token (256 bits), URL-safe as Synapse's own generated tokens are."""
    return secrets.token_urlsafe(32)


def guest_registration(
    *,
    server_name: str,
    user_prefix: str,
    sender_localpart: str,
    as_token: str,
    hs_token: str,
    appservice_id: str = GUEST_APPSERVICE_ID,
) -> dict[str, Any]:
    """GuestGate's registration on the guest homeserver: it owns the guest user namespace.

    No ``url``: the guest homeserver pushes nothing to GuestGate (Synapse needs an explicit
    null). ``rate_limited: false``: guests arrive in bursts and are provisioned by the
    appservice (MATRIX-LAB P9).
    """
    regex = f"@{re.escape(user_prefix)}.*:{re.escape(server_name)}"
    return {
        "id": appservice_id,
        "url": None,
        "as_token": as_token,
        "hs_token": hs_token,
        "sender_localpart": sender_localpart,
        "rate_limited": False,
        "namespaces": {"users": [{"exclusive": True, "regex": regex}], "rooms": [], "aliases": []},
    }


def main_registration(
    *,
    url: str,
    sender_localpart: str,
    as_token: str,
    hs_token: str,
    appservice_id: str,
) -> dict[str, Any]:
    """GuestGate's registration on the main homeserver: its sender is the bot in call rooms.

    It claims no users, rooms or aliases; main pushes the events of every room the bot is in
    to ``url`` + ``/_matrix/app/v1/transactions/{txnId}``.
    """
    return {
        "id": appservice_id,
        "url": url,
        "as_token": as_token,
        "hs_token": hs_token,
        "sender_localpart": sender_localpart,
        "rate_limited": False,
        "receive_ephemeral": False,
        "namespaces": {"users": [], "rooms": [], "aliases": []},
    }


class Command(BaseCommand):
    help = (
        "Print GuestGate's appservice registration for a real guest or main homeserver, with "
        "fresh tokens; the matching environment lines go to standard error."
    )
    # Used while setting up, before the homeserver settings exist.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("role", choices=["guest", "main"], help="which homeserver")
        parser.add_argument(
            "--url",
            help="main only: where main reaches GuestGate (default GUESTGATE_PUBLIC_URL; in "
            "docker compose http://web:8000)",
        )
        parser.add_argument(
            "--server-name",
            help="guest only: the guest homeserver's server_name (default GUEST_HS_SERVER_NAME)",
        )
        parser.add_argument(
            "--id",
            dest="appservice_id",
            help=f"the registration's id (default {GUEST_APPSERVICE_ID} for guest, "
            "MAIN_APPSERVICE_ID for main)",
        )
        parser.add_argument("--out", type=Path, help="write the file here (mode 0600)")
        parser.add_argument(
            "--force", action="store_true", help="overwrite --out (its tokens stop working)"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        role: str = options["role"]
        as_token, hs_token = new_token(), new_token()
        if role == "guest":
            registration = self._guest(options, as_token, hs_token)
            env_lines = [f"GUEST_AS_TOKEN={as_token}"]
        else:
            registration = self._main(options, as_token, hs_token)
            env_lines = [
                f"MAIN_AS_TOKEN={as_token}",
                f"MAIN_HS_TOKEN={hs_token}",
                f"MAIN_APPSERVICE_ID={registration['id']}",
            ]
        text = _header(role, registration) + yaml.safe_dump(
            registration, sort_keys=False, default_flow_style=False
        )
        out: Path | None = options["out"]
        if out is None:
            self.stdout.write(text, ending="")
        else:
            _write_private(out, text, overwrite=options["force"])
            self.stderr.write(
                f"Wrote {out}: list it in the {role} homeserver's "
                "app_service_config_files and restart Synapse."
            )
        self.stderr.write(
            "# Add to GuestGate's environment (.env), then restart web, worker and beat:"
        )
        for line in env_lines:
            self.stderr.write(line, style_func=_plain)  # uncoloured: to be copied as it is

    def _guest(self, options: dict[str, Any], as_token: str, hs_token: str) -> dict[str, Any]:
        if options["url"]:
            raise CommandError(
                "The guest homeserver pushes nothing to GuestGate: its registration has "
                "url: null. --url is for main."
            )
        server_name = options["server_name"] or settings.GUEST_HS_SERVER_NAME
        if not server_name:
            raise CommandError(
                "Which guest homeserver? Set GUEST_HS_SERVER_NAME or pass --server-name "
                "(its server_name, e.g. guests.example.org)."
            )
        return guest_registration(
            server_name=server_name,
            user_prefix=settings.GUEST_USER_PREFIX,
            sender_localpart=settings.MAIN_BOT_LOCALPART,
            as_token=as_token,
            hs_token=hs_token,
            appservice_id=options["appservice_id"] or GUEST_APPSERVICE_ID,
        )

    def _main(self, options: dict[str, Any], as_token: str, hs_token: str) -> dict[str, Any]:
        if options["server_name"]:
            raise CommandError(
                "Main's registration claims no users, so it names no server: --server-name "
                "is for guest."
            )
        url = (options["url"] or settings.PUBLIC_URL).rstrip("/")
        if not url.startswith(("http://", "https://")):
            raise CommandError(f"--url {url!r} is not an http(s) URL.")
        return main_registration(
            url=url,
            sender_localpart=settings.MAIN_BOT_LOCALPART,
            as_token=as_token,
            hs_token=hs_token,
            appservice_id=options["appservice_id"] or settings.MAIN_APPSERVICE_ID,
        )


def _plain(text: str) -> str:
    return text


def _header(role: str, registration: dict[str, Any]) -> str:
    if role == "guest":
        what = (
            "# GuestGate's appservice on the GUEST homeserver: it owns the guest accounts.\n"
            "# The regex must match GUEST_USER_PREFIX and the guest server_name.\n"
        )
    else:
        what = (
            "# GuestGate's appservice on the MAIN homeserver: its sender is the bot in call\n"
            f"# rooms; main pushes their events to {registration['url']}.\n"
        )
    return (
        what + "# List this file in homeserver.yaml's app_service_config_files and restart\n"
        "# Synapse. It holds secrets: keep it readable by Synapse only.\n"
    )


def _write_private(path: Path, text: str, *, overwrite: bool) -> None:
    """Write ``text`` readable by its owner only; refuse to replace a file unless asked."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if overwrite else os.O_EXCL)
    try:
        descriptor = os.open(path, flags, 0o600)
    except FileExistsError:
        raise CommandError(
            f"{path} exists. Its tokens may be in use: pass --force to replace it."
        ) from None
    except OSError as exc:
        raise CommandError(f"Cannot write {path}: {exc.strerror}") from None
    with os.fdopen(descriptor, "w") as handle:
        handle.write(text)
