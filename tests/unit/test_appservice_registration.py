"""``manage.py appservice_registration``: the files an operator hands to a real Synapse."""

from __future__ import annotations

import re
import stat
from io import StringIO
from pathlib import Path

import pytest
import yaml
from django.core.management import CommandError, call_command

from devtools.localpair import local_pair
from devtools.localpair.config import appservice_registration


def run(*args: str) -> tuple[dict, str]:
    """The registration as YAML parsed, and what went to standard error."""
    out, err = StringIO(), StringIO()
    call_command("appservice_registration", *args, stdout=out, stderr=err, no_color=True)
    return yaml.safe_load(out.getvalue()), err.getvalue()


def env_lines(stderr: str) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in stderr.splitlines() if re.match(r"[A-Z_]+=", line))
    return dict(pairs)


@pytest.fixture(autouse=True)
def deployment(settings) -> None:
    settings.GUEST_HS_SERVER_NAME = "guests.example.org"
    settings.GUEST_USER_PREFIX = "guest_"
    settings.MAIN_BOT_LOCALPART = "guestgate"
    settings.PUBLIC_URL = "https://join.example.org"
    settings.MAIN_APPSERVICE_ID = "guestgate-main"


def test_guest_registration_owns_the_guest_namespace_and_wants_no_pushes():
    registration, stderr = run("guest")

    assert registration["id"] == "guestgate-guests"
    assert registration["url"] is None  # explicit null: Synapse refuses a missing url
    assert "url" in registration
    assert registration["rate_limited"] is False
    assert registration["sender_localpart"] == "guestgate"
    [users] = registration["namespaces"]["users"]
    assert users["exclusive"] is True
    assert env_lines(stderr) == {"GUEST_AS_TOKEN": registration["as_token"]}


def test_guest_regex_matches_guests_of_that_server_only():
    registration, _ = run("guest")
    regex = re.compile(registration["namespaces"]["users"][0]["regex"])

    assert regex.fullmatch("@guest_4f2a9c:guests.example.org")
    assert not regex.fullmatch("@guest_4f2a9c:guestsXexample.org")  # dots are escaped
    assert not regex.fullmatch("@alice:guests.example.org")
    assert not regex.fullmatch("@guest_4f2a9c:example.org")


def test_server_name_option_wins_and_is_escaped():
    registration, _ = run("guest", "--server-name", "localhost:8448")

    assert registration["namespaces"]["users"][0]["regex"] == r"@guest_.*:localhost:8448"


def test_main_registration_points_at_guestgate_and_claims_nothing():
    registration, stderr = run("main")

    assert registration["id"] == "guestgate-main"
    assert registration["url"] == "https://join.example.org"
    assert registration["rate_limited"] is False
    assert registration["sender_localpart"] == "guestgate"
    assert registration["namespaces"] == {"users": [], "rooms": [], "aliases": []}
    assert env_lines(stderr) == {
        "MAIN_AS_TOKEN": registration["as_token"],
        "MAIN_HS_TOKEN": registration["hs_token"],
        "MAIN_APPSERVICE_ID": "guestgate-main",
    }


def test_main_url_option_is_where_main_reaches_guestgate():
    registration, _ = run("main", "--url", "http://web:8000/", "--id", "gg")

    assert registration["url"] == "http://web:8000"
    assert registration["id"] == "gg"


@pytest.mark.parametrize("role", ["guest", "main"])
def test_tokens_are_fresh_random_and_distinct(role):
    first, _ = run(role)
    second, _ = run(role)

    tokens = {first["as_token"], first["hs_token"], second["as_token"], second["hs_token"]}
    assert len(tokens) == 4
    assert all(len(token) >= 43 for token in tokens)  # 32 random bytes, URL-safe base64


def test_same_keys_as_the_local_pair_that_the_suite_runs_on_real_synapse(tmp_path: Path):
    pair = local_pair("test", tmp_path)
    for role, server in (("guest", pair.guest), ("main", pair.main)):
        registration, _ = run(role)
        assert list(registration) == list(appservice_registration(pair, server))


@pytest.mark.parametrize("role", ["guest", "main"])
def test_synapse_loads_the_file(role, tmp_path: Path):
    """Synapse's own loader (the installed version) accepts the file and reads it as meant."""
    pytest.importorskip("synapse")
    from synapse.config.appservice import load_appservices

    path = tmp_path / f"{role}.yaml"
    call_command("appservice_registration", role, "--out", str(path), stderr=StringIO())
    server_name = "guests.example.org" if role == "guest" else "example.org"

    [service] = load_appservices(server_name, [str(path)])

    assert service.is_rate_limited() is False
    assert service.sender.to_string() == f"@guestgate:{server_name}"
    if role == "guest":
        assert service.url is None
        assert service.is_exclusive_user("@guest_x1:guests.example.org")
        assert not service.is_interested_in_user("@alice:guests.example.org")
    else:
        assert service.url == "https://join.example.org"
        assert not service.is_interested_in_user("@alice:example.org")


def test_out_writes_a_private_file_and_keeps_tokens_off_stdout(tmp_path: Path):
    path = tmp_path / "appservice.yaml"
    out, err = StringIO(), StringIO()

    call_command("appservice_registration", "main", "--out", str(path), stdout=out, stderr=err)

    registration = yaml.safe_load(path.read_text())
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert out.getvalue() == ""
    assert f"MAIN_HS_TOKEN={registration['hs_token']}" in err.getvalue()
    assert path.read_text().startswith("# GuestGate's appservice on the MAIN homeserver")


def test_out_refuses_to_replace_a_file_in_use_unless_forced(tmp_path: Path):
    path = tmp_path / "appservice.yaml"
    path.write_text("as_token: in-use\n")

    with pytest.raises(CommandError, match="pass --force"):
        call_command("appservice_registration", "guest", "--out", str(path), stderr=StringIO())
    assert path.read_text() == "as_token: in-use\n"

    call_command(
        "appservice_registration", "guest", "--out", str(path), "--force", stderr=StringIO()
    )
    assert yaml.safe_load(path.read_text())["as_token"] != "in-use"


def test_nothing_is_logged(caplog):
    with caplog.at_level("DEBUG"):
        registration, _ = run("main")

    assert registration["as_token"] not in caplog.text
    assert registration["hs_token"] not in caplog.text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["guest", "--url", "http://web:8000"], "url: null"),
        (["main", "--server-name", "example.org"], "--server-name is for guest"),
        (["main", "--url", "web:8000"], "not an http"),
    ],
)
def test_wrong_options_are_explained(args, message):
    with pytest.raises(CommandError, match=re.escape(message)):
        run(*args)


def test_guest_without_a_server_name_says_how_to_give_one(settings):
    settings.GUEST_HS_SERVER_NAME = ""

    with pytest.raises(CommandError, match="GUEST_HS_SERVER_NAME or pass --server-name"):
        run("guest")
