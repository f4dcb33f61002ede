"""Generate what each Synapse of the local pair needs: config, appservice, keys, certificates.

Everything lands in ``LocalHomeserver.directory`` (``var/homeservers/<profile>/<role>/``), except
the local certificate authority, which both servers share (``var/homeservers/<profile>/ca.*``).
Generation is idempotent: keys, certificates, signing keys and databases are kept once made;
the YAML files are rewritten (only when their content changes) so config changes apply on the
next start. The keys and values are the measured ones of ``/work/shared/MATRIX-LAB.md`` §2.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from signedjson.key import generate_signing_key, write_signing_keys

from devtools.localpair import LocalHomeserver, LocalPair

_CA_VALIDITY = datetime.timedelta(days=3650)
_LEAF_VALIDITY = datetime.timedelta(days=825)
# Renew a leaf certificate this long before it expires, so a running pair never hits the edge.
_RENEW_BEFORE = datetime.timedelta(days=30)


@dataclass(frozen=True)
class ServerFiles:
    """Where one homeserver's generated files and runtime files live (absolute paths)."""

    directory: Path
    config: Path  # homeserver.yaml
    appservice: Path  # GuestGate's appservice registration on this server
    log_config: Path
    log: Path  # Synapse's own log (WARNING and above)
    console: Path  # the process's stdout and stderr: start-up errors land here
    pid: Path  # our PID file, written by devtools.localpair.process right after spawn
    synapse_pid: Path  # Synapse's pid_file (only used by Synapse when it daemonizes)
    signing_key: Path
    tls_certificate: Path
    tls_private_key: Path
    database: Path
    media_store: Path


@dataclass(frozen=True)
class AuthorityFiles:
    """The local certificate authority both servers of a pair trust for federation (P3)."""

    certificate: Path
    private_key: Path


def server_files(server: LocalHomeserver) -> ServerFiles:
    """Return the paths of ``server``'s files; creates nothing."""
    directory = server.directory.resolve()
    return ServerFiles(
        directory=directory,
        config=directory / "homeserver.yaml",
        appservice=directory / "appservice.yaml",
        log_config=directory / "log.config.yaml",
        log=directory / "homeserver.log",
        console=directory / "console.log",
        pid=directory / "guestgate.pid",
        synapse_pid=directory / "homeserver.pid",
        signing_key=directory / "signing.key",
        tls_certificate=directory / "tls.crt",
        tls_private_key=directory / "tls.key",
        database=directory / "homeserver.db",
        media_store=directory / "media_store",
    )


def authority_files(pair: LocalPair) -> AuthorityFiles:
    """Return the paths of the pair's local certificate authority; creates nothing."""
    directory = pair.directory.resolve()
    return AuthorityFiles(certificate=directory / "ca.crt", private_key=directory / "ca.key")


def write_pair_config(pair: LocalPair) -> None:
    """Create or refresh every file both homeservers of ``pair`` need to start."""
    authority = ensure_authority(pair)
    for server in pair.servers:
        write_server_config(pair, server, authority)


def write_server_config(
    pair: LocalPair, server: LocalHomeserver, authority: AuthorityFiles
) -> None:
    """Create or refresh ``server``'s keys, certificate, log config, appservice and config."""
    files = server_files(server)
    files.directory.mkdir(parents=True, exist_ok=True)
    files.media_store.mkdir(exist_ok=True)
    ensure_signing_key(files.signing_key)
    ensure_leaf_certificate(files, authority)
    _write_yaml(files.log_config, log_config(files))
    _write_yaml(files.appservice, appservice_registration(pair, server))
    config = homeserver_config(server, files, authority)
    if server.role == "guest":
        config.update(guest_call_settings(pair.rtc_focus_url))
    _write_yaml(files.config, config)


def guest_call_settings(livekit_service_url: str) -> dict[str, Any]:
    """What calls need of the guest server (CALL-LAB §5, §7); the deploy template has the same.

    Delayed events (MSC4140): Element Call schedules its own leave and keeps postponing it, so
    a guest who closes the tab leaves the call seconds later instead of staying a "ghost" for
    the membership's 4 hours. MSC4143: the server names the call's focus (its JWT service).
    """
    return {
        "max_event_delay_duration": "24h",
        "experimental_features": {"msc4143_enabled": True},
        "matrix_rtc": {
            "transports": [{"type": "livekit", "livekit_service_url": livekit_service_url}]
        },
    }


def homeserver_config(
    server: LocalHomeserver, files: ServerFiles, authority: AuthorityFiles
) -> dict[str, Any]:
    """Return the content of ``server``'s homeserver.yaml (MATRIX-LAB §2)."""
    return {
        "server_name": server.server_name,
        "pid_file": str(files.synapse_pid),
        "public_baseurl": f"{server.client_url}/",
        "listeners": [
            # P1: federation is HTTPS only, and Synapse connects to the port in the server name.
            _listener(server.federation_port, tls=True, resource="federation"),
            # The client resource also serves /_synapse/admin; plain HTTP on loopback only.
            _listener(server.client_port, tls=False, resource="client"),
        ],
        "tls_certificate_path": str(files.tls_certificate),
        "tls_private_key_path": str(files.tls_private_key),
        # P3: keep verification on; a CA with CA:TRUE is required, a bare leaf is rejected.
        "federation_verify_certificates": True,
        "federation_custom_ca_list": [str(authority.certificate)],
        # P2: the default ip_range_blacklist blocks loopback, and the error blames DNS.
        "ip_range_whitelist": ["127.0.0.1/32", "::1/128"],
        "database": {"name": "sqlite3", "args": {"database": str(files.database)}},
        "log_config": str(files.log_config),
        "media_store_path": str(files.media_store),
        "signing_key_path": str(files.signing_key),
        # Fetch each peer's keys from the peer itself; there is no matrix.org to ask here.
        "trusted_key_servers": [],
        "suppress_key_server_warning": True,
        "report_stats": False,
        "enable_metrics": False,
        "registration_shared_secret": server.registration_shared_secret,
        "macaroon_secret_key": server.macaroon_secret_key,
        "form_secret": server.form_secret,
        "enable_registration": False,
        "presence": {"enabled": False},
        "app_service_config_files": [str(files.appservice)],
        # Dev and test speed: every registration hashes a password, and bcrypt's work doubles
        # with each round (MATRIX-LAB §3b has the figures).
        "bcrypt_rounds": 4,
        **generous_rate_limits(),
        **(guest_federation_retry() if server.role == "guest" else {}),
    }


def guest_federation_retry() -> dict[str, Any]:
    """The guest server's backoff from main after failing to reach it: short and capped.

    Synapse's default (10 minutes, doubling, up to 7 days) kept every new guest out for 10+
    minutes after a 20-second outage of main. The guest server federates with main only,
    and a guest is waiting in front of every request to it, so trying again soon costs one
    request. deploy/synapse/guest/homeserver.yaml has the same values.
    """
    return {
        "federation": {
            "destination_min_retry_interval": "5s",
            "destination_retry_multiplier": 2,
            "destination_max_retry_interval": "1m",
        }
    }


def generous_rate_limits() -> dict[str, Any]:
    """Return ``rc_*`` settings high enough for test bursts (P9), in the shapes Synapse parses.

    Every call builds fresh dicts, so the dumped YAML has no ``&id001`` anchors (P10). The keys
    and nesting follow ``synapse/config/ratelimiting.py`` of the installed Synapse.
    """

    def limit() -> dict[str, float]:
        return {"per_second": 1000, "burst_count": 1000}

    return {
        "rc_message": limit(),
        "rc_registration": limit(),
        "rc_login": {"address": limit(), "account": limit(), "failed_attempts": limit()},
        "rc_joins": {"local": limit(), "remote": limit()},
        "rc_joins_per_room": limit(),
        # Default per_room/per_issuer (0.3/s, burst 10) rejected a moderator's 11th approval.
        "rc_invites": {"per_room": limit(), "per_user": limit(), "per_issuer": limit()},
        "rc_room_creation": limit(),
        "rc_admin_redaction": limit(),
        "rc_profile": limit(),
        "rc_key_requests": limit(),
        "rc_presence": {"per_user": limit()},
        "rc_delayed_event_mgmt": limit(),
        "rc_media_create": limit(),
        # Not per_second/burst_count: a window of sleep/reject thresholds per origin server.
        # The default (3 concurrent, 10/s) holds back bursts of knocks (MATRIX-LAB section 4).
        "rc_federation": {
            "window_size": 1000,
            "sleep_limit": 1000,
            "sleep_delay": 1,
            "reject_limit": 10000,
            "concurrent": 100,
        },
    }


def appservice_registration(pair: LocalPair, server: LocalHomeserver) -> dict[str, Any]:
    """Return GuestGate's appservice registration on ``server``.

    On the guest server it owns the guest user namespace and needs no pushes (``url: null``).
    On the main server it owns nothing; its sender is the bot that joins call rooms, and
    Synapse pushes the events of those rooms to GuestGate at ``pair.appservice_url``.
    """
    registration: dict[str, Any] = {
        "as_token": server.as_token,
        "hs_token": server.hs_token,
        "sender_localpart": pair.bot_localpart,
        # The bot approves and provisions in bursts; client-side limits would only delay it.
        "rate_limited": False,
    }
    if server.role == "guest":
        user_regex = f"@{re.escape(pair.guest_user_prefix)}.*:{re.escape(server.server_name)}"
        return {
            "id": "guestgate-guests",
            "url": None,  # Synapse requires an explicit null, not a missing key.
            **registration,
            "namespaces": {
                "users": [{"exclusive": True, "regex": user_regex}],
                "rooms": [],
                "aliases": [],
            },
        }
    return {
        "id": "guestgate-main",
        "url": pair.appservice_url,
        **registration,
        "receive_ephemeral": False,
        "namespaces": {"users": [], "rooms": [], "aliases": []},
    }


def log_config(files: ServerFiles) -> dict[str, Any]:
    """Return a logging config that writes WARNING and above to ``files.log``."""
    return {
        "version": 1,
        "formatters": {
            "precise": {
                # %(request)s is filled by the record factory Synapse installs.
                "format": "%(asctime)s - %(name)s - %(lineno)d - %(levelname)s - "
                "%(request)s - %(message)s"
            }
        },
        "handlers": {
            "file": {
                "class": "logging.FileHandler",
                "formatter": "precise",
                "filename": str(files.log),
                "encoding": "utf8",
            }
        },
        # Never DEBUG for synapse.storage.SQL: it would log access tokens.
        "root": {"level": "WARNING", "handlers": ["file"]},
        "disable_existing_loggers": False,
    }


def ensure_signing_key(path: Path) -> None:
    """Create a Synapse signing key at ``path`` unless one is there (federation identity)."""
    if path.exists():
        return
    key = generate_signing_key(f"a_{secrets.token_hex(2)}")

    def write(handle: Any) -> None:
        write_signing_keys(handle, [key])

    _write_private(path, write, text=True)


def ensure_authority(pair: LocalPair) -> AuthorityFiles:
    """Create the pair's local CA (``CA:TRUE``, P3) unless a valid one exists; return its files."""
    authority = authority_files(pair)
    authority.certificate.parent.mkdir(parents=True, exist_ok=True)
    if authority.certificate.exists() and authority.private_key.exists():
        certificate = x509.load_pem_x509_certificate(authority.certificate.read_bytes())
        if _still_valid(certificate):
            return authority
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"GuestGate {pair.profile} CA")])
    now = _now()
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + _CA_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_private(authority.private_key, lambda h: h.write(_private_pem(key)))
    # A new CA invalidates every leaf it did not sign: ensure_leaf_certificate notices that.
    _write_public(authority.certificate, certificate.public_bytes(serialization.Encoding.PEM))
    return authority


def ensure_leaf_certificate(files: ServerFiles, authority: AuthorityFiles) -> None:
    """Create ``files``' TLS certificate for localhost, 127.0.0.1 and ::1, signed by the CA.

    An existing certificate is kept while the CA still verifies it and it is not near expiry.
    """
    ca_certificate = x509.load_pem_x509_certificate(authority.certificate.read_bytes())
    if files.tls_certificate.exists() and files.tls_private_key.exists():
        current = x509.load_pem_x509_certificate(files.tls_certificate.read_bytes())
        if _still_valid(current) and _issued_by(current, ca_certificate):
            return
    ca_key = serialization.load_pem_private_key(authority.private_key.read_bytes(), None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise TypeError(f"{authority.private_key} is not the EC key this module writes")
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + _LEAF_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    x509.IPAddress(ipaddress.ip_address("::1")),
                ]
            ),
            critical=False,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        # Strict verifiers (Python 3.13's default context) require the authority key id.
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    _write_private(files.tls_private_key, lambda h: h.write(_private_pem(key)))
    _write_public(files.tls_certificate, certificate.public_bytes(serialization.Encoding.PEM))


def _listener(port: int, *, tls: bool, resource: str) -> dict[str, Any]:
    return {
        "port": port,
        "bind_addresses": ["127.0.0.1"],
        "type": "http",
        "tls": tls,
        "x_forwarded": False,
        "resources": [{"names": [resource], "compress": False}],
    }


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _still_valid(certificate: x509.Certificate) -> bool:
    return certificate.not_valid_after_utc - _RENEW_BEFORE > _now()


def _issued_by(certificate: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        certificate.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _private_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _write_yaml(path: Path, content: dict[str, Any]) -> None:
    """Write ``content`` as YAML, only if it changed; 0600 because configs carry secrets."""
    text = yaml.safe_dump(content, sort_keys=False, default_flow_style=False)
    if path.exists() and path.read_text() == text:
        return
    _write_private(path, lambda h: h.write(text), text=True)


def _write_public(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


def _write_private(path: Path, write: Callable[[Any], object], *, text: bool = False) -> None:
    """Write a file readable by its owner only, whole then renamed (a starting Synapse reads it)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    descriptor = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w" if text else "wb") as handle:
        write(handle)
    tmp.replace(path)
