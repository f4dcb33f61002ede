"""Security headers on every page, HTTPS settings from the environment, Django's deploy check."""

from __future__ import annotations

import json
import re
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.core.management import call_command
from django.http import HttpResponse
from django.test import Client, RequestFactory

from ops.security import ContentSecurityPolicyMiddleware

pytestmark = pytest.mark.django_db

PAGE = "/moderator/sign-in"
CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)


def test_a_page_carries_the_security_headers(client: Client) -> None:
    response = client.get(PAGE)

    assert response.status_code == 200
    assert response["Content-Security-Policy"] == CSP
    assert response["X-Frame-Options"] == "DENY"
    assert response["Referrer-Policy"] == "same-origin"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Cross-Origin-Opener-Policy"] == "same-origin"


SECURITY_HEADERS = (
    "Content-Security-Policy",
    "X-Frame-Options",
    "Referrer-Policy",
    "X-Content-Type-Options",
    "Cross-Origin-Opener-Policy",
)


def test_a_static_file_carries_the_security_headers_a_page_has(
    settings: Any, tmp_path: Path
) -> None:
    # As deployed: collectstatic, then WhiteNoise serves STATIC_ROOT (tests/settings has no
    # collected files of its own; a fresh Client builds the middleware with these settings).
    settings.STATIC_ROOT = tmp_path
    call_command("collectstatic", interactive=False, verbosity=0)
    client = Client()

    page = client.get(PAGE)
    script = client.get("/static/guestgate/lobby.js")

    assert script.status_code == 200
    assert script["Content-Type"].startswith("text/javascript")
    assert {name: script.get(name) for name in SECURITY_HEADERS} == {
        name: page[name] for name in SECURITY_HEADERS
    }


def test_a_view_that_sets_its_own_policy_keeps_it() -> None:
    def view(request: object) -> HttpResponse:
        response = HttpResponse("<p>embedded</p>")
        response["Content-Security-Policy"] = "frame-ancestors https://intranet.example.org"
        return response

    response = ContentSecurityPolicyMiddleware(view)(RequestFactory().get("/"))

    assert response["Content-Security-Policy"] == "frame-ancestors https://intranet.example.org"


def test_hsts_is_sent_over_https_when_configured(client: Client, settings) -> None:
    settings.SECURE_HSTS_SECONDS = 31536000
    settings.SECURE_HSTS_INCLUDE_SUBDOMAINS = True

    response = client.get(PAGE, secure=True)

    assert response["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains"


def test_the_ssl_redirect_spares_probes_scrapers_and_the_homeservers_pushes(
    client: Client, settings
) -> None:
    settings.SECURE_SSL_REDIRECT = True

    page = client.get(PAGE)
    metrics = client.get("/metrics", REMOTE_ADDR="127.0.0.1")
    push = client.put("/_matrix/app/v1/transactions/t1", data="{}", content_type="application/json")

    assert page.status_code == 301
    assert page["Location"] == f"https://testserver{PAGE}"
    assert metrics.status_code == 200
    assert push.status_code == 401  # refused for its missing token, not sent elsewhere


_INLINE_CODE = re.compile(
    r"<script(?![^>]*\bsrc=)[^>]*>|<style\b|\sstyle=\"|\son[a-z]+=\"", re.IGNORECASE
)


def test_no_template_has_inline_code_the_policy_would_block() -> None:
    templates = Path(django_settings.BASE_DIR, "templates")
    offenders = [
        f"{path.relative_to(templates)}: {match.group(0)}"
        for path in sorted(templates.rglob("*.html"))
        for match in _INLINE_CODE.finditer(path.read_text())
    ]

    assert offenders == []


# -- Settings from a production-like environment, in a fresh process ---------------------------


def production_env(tmp_path: Path, **overrides: str) -> dict[str, str]:
    env = {
        "PATH": "/usr/bin:/bin",
        "DJANGO_SETTINGS_MODULE": "guestgate.settings",
        "GUESTGATE_VAR_DIR": str(tmp_path),
        "GUESTGATE_DEBUG": "false",
        "GUESTGATE_SECRET_KEY": secrets.token_urlsafe(50),
        "GUESTGATE_ALLOWED_HOSTS": "guests.example.org",
        "GUESTGATE_PUBLIC_URL": "https://guests.example.org/",
        "GUESTGATE_SECURE_COOKIES": "true",
        "GUESTGATE_HSTS_SECONDS": "31536000",
        "GUESTGATE_HSTS_INCLUDE_SUBDOMAINS": "true",
        "GUESTGATE_HSTS_PRELOAD": "true",
        "GUESTGATE_SSL_REDIRECT": "true",
        "GUEST_HS_URL": "http://127.0.0.1:9",
        "GUEST_HS_SERVER_NAME": "guests.example.org",
        "GUEST_AS_TOKEN": "guest-as-token",
        "MAIN_HS_URL": "http://127.0.0.1:9",
        "MAIN_HS_SERVER_NAME": "example.org",
        "MAIN_AS_TOKEN": "main-as-token",
        "MAIN_HS_TOKEN": "main-hs-token",
    }
    return {**env, **overrides}


def run_python(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args],
        cwd=django_settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_deploy_check_passes_with_production_settings(tmp_path: Path) -> None:
    result = run_python(
        production_env(tmp_path), "manage.py", "check", "--deploy", "--fail-level", "WARNING"
    )

    assert result.returncode == 0, result.stderr
    assert "System check identified no issues (0 silenced)." in result.stdout
    assert "WARNING" not in result.stderr


def settings_in(env: dict[str, str], *names: str) -> dict[str, object]:
    code = (
        "import json, django; django.setup(); from django.conf import settings; "
        f"print(json.dumps({{n: getattr(settings, n) for n in {list(names)!r}}}))"
    )
    result = run_python(env, "-c", code)
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout))


def test_https_settings_follow_the_environment(tmp_path: Path) -> None:
    values = settings_in(
        production_env(tmp_path, GUESTGATE_BEHIND_TLS_PROXY="true"),
        "SECURE_PROXY_SSL_HEADER",
        "CSRF_TRUSTED_ORIGINS",
        "SECURE_HSTS_PRELOAD",
        "LOG_FORMAT",
    )

    assert values == {
        "SECURE_PROXY_SSL_HEADER": ["HTTP_X_FORWARDED_PROTO", "https"],
        "CSRF_TRUSTED_ORIGINS": ["https://guests.example.org"],
        "SECURE_HSTS_PRELOAD": True,
        "LOG_FORMAT": "json",
    }


def test_without_a_tls_proxy_no_forwarded_header_is_trusted(tmp_path: Path) -> None:
    env = production_env(tmp_path, GUESTGATE_DEBUG="true", GUESTGATE_HSTS_SECONDS="")

    assert settings_in(env, "SECURE_PROXY_SSL_HEADER", "SECURE_HSTS_SECONDS", "LOG_FORMAT") == {
        "SECURE_PROXY_SSL_HEADER": None,
        "SECURE_HSTS_SECONDS": 0,
        "LOG_FORMAT": "plain",
    }


@pytest.mark.parametrize(
    ("name", "value"),
    [("GUESTGATE_METRICS_ALLOWED_IPS", "127.0.0.1,localhost"), ("GUESTGATE_LOG_FORMAT", "xml")],
)
def test_a_bad_operations_setting_stops_the_start_with_its_name(
    tmp_path: Path, name: str, value: str
) -> None:
    result = run_python(production_env(tmp_path, **{name: value}), "manage.py", "check")

    assert result.returncode != 0
    assert f"{name}" in result.stderr
