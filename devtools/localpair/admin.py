"""A Synapse admin on a local homeserver (for reconciliation in dev and tests), made once."""

from __future__ import annotations

import secrets

from devtools.localpair import LocalHomeserver
from matrix import MatrixClient, UnknownToken, UserInUse, register_with_shared_secret

ADMIN_LOCALPART = "guestgate_admin"


def local_admin_token(server: LocalHomeserver) -> str:
    """The admin's token, kept in the server's directory; registered (or re-logged in) as
    needed."""
    token_file = server.directory / "admin.token"  # LocalPair.admin_token_file
    password_file = server.directory / "admin.password"
    if token_file.exists():
        token = token_file.read_text().strip()
        with MatrixClient(base_url=server.client_url, access_token=token) as client:
            try:
                client.whoami()
                return token
            except UnknownToken:
                pass
    if not password_file.exists():
        password_file.write_text(secrets.token_urlsafe(18))
        password_file.chmod(0o600)
    password = password_file.read_text().strip()
    try:
        session = register_with_shared_secret(
            server.client_url,
            shared_secret=server.registration_shared_secret,
            username=ADMIN_LOCALPART,
            password=password,
            admin=True,
        )
    except UserInUse:
        with MatrixClient(base_url=server.client_url, access_token=None) as anonymous:
            session = anonymous.password_login(ADMIN_LOCALPART, password)
    token_file.write_text(session.access_token)
    token_file.chmod(0o600)
    return session.access_token
