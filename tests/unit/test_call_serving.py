"""Element Call's embedded build under /call/: its own CSP (inline scripts by the hashes of
the installed index.html), framed by GuestGate only, compressed, hashed assets long-cached;
everything else keeps the strict policy."""

from __future__ import annotations

import base64
import hashlib
import os
import re
from pathlib import Path

import pytest
from django.conf import settings
from django.test import Client
from whitenoise.base import WhiteNoise

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _front_end_built() -> None:
    if settings.CALL_MODE != "embedded":
        if os.environ.get("CI") == "true":  # CI builds the front end: its absence is a failure
            pytest.fail("the front end is not built (make frontend)", pytrace=False)
        pytest.skip("the front end is not built (npm missing?): make frontend")


def index_html() -> str:
    return (Path(settings.CALL_BUILD_DIR) / "index.html").read_text()


def test_element_call_is_served_with_its_inline_scripts_allowed_and_framed_by_guestgate_only(
    client: Client,
) -> None:
    response = client.get("/call/index.html")

    assert response.status_code == 200
    policy = response["Content-Security-Policy"]
    inline = re.findall(r"<script>(.*?)</script>", index_html(), re.DOTALL)
    assert len(inline) == 2
    for body in inline:
        digest = base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
        assert f"'sha256-{digest}'" in policy
    assert "frame-ancestors 'self'" in policy
    assert "'unsafe-inline'" not in policy
    assert response["X-Frame-Options"] == "SAMEORIGIN"


def test_element_calls_hashed_assets_are_compressed_and_cached_for_long(client: Client) -> None:
    script = re.search(r'src="\./(assets/index-[^"]+\.js)"', index_html())
    assert script is not None

    response = client.get(f"/call/{script.group(1)}", HTTP_ACCEPT_ENCODING="gzip")

    assert response.status_code == 200
    assert response["Content-Encoding"] == "gzip"
    assert "immutable" in response["Cache-Control"]


def test_element_calls_source_maps_are_not_served(client: Client) -> None:
    maps = list(Path(settings.CALL_BUILD_DIR).rglob("*.map"))

    assert maps == []


def test_other_pages_still_refuse_to_be_framed(client: Client) -> None:
    response = client.get("/moderator/sign-in")

    assert response["X-Frame-Options"] == "DENY"
    assert "frame-ancestors 'none'" in response["Content-Security-Policy"]


def test_the_crypto_webassembly_is_served_as_such_compressed_and_cached_for_long() -> None:
    # As deployed: WhiteNoise with GuestGate's rules over the collected static files (the
    # front end's build/static among them; collectstatic copies it unchanged).
    static = Path(settings.FRONTEND_BUILD_DIR) / "static"
    [wasm] = (static / "guestgate" / "call-host").glob("*.wasm")
    served = WhiteNoise(None, immutable_file_test=settings.WHITENOISE_IMMUTABLE_FILE_TEST)
    served.add_files(str(static), prefix=settings.STATIC_URL)
    url = f"/{settings.STATIC_URL.strip('/')}/guestgate/call-host/{wasm.name}"

    response = served.files[url].get_response("GET", {"HTTP_ACCEPT_ENCODING": "gzip"})

    headers = dict(response.headers)
    assert response.status == 200
    assert headers["Content-Type"] == "application/wasm"
    assert headers["Content-Encoding"] == "gzip"
    assert "immutable" in headers["Cache-Control"]
