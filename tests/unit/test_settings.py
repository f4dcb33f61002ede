"""Settings from the environment, and the system checks that say what is misconfigured."""

from __future__ import annotations

import pytest
from django.test import override_settings

from guestgate.checks import homeservers_configured, secret_key_set
from guestgate.env import ImproperlyConfiguredEnv, env_bool, env_int, env_secret


def ids(messages: list) -> list[str]:
    return [m.id for m in messages]


def test_the_test_settings_point_at_the_local_test_pair_and_pass_the_checks() -> None:
    assert homeservers_configured(None) == []
    assert secret_key_set(None) == []


@override_settings(GUEST_HS_URL="", MAIN_HS_TOKEN="")
def test_a_missing_homeserver_setting_is_named_with_a_hint() -> None:
    errors = homeservers_configured(None)

    assert ids(errors) == ["guestgate.E001", "guestgate.E001"]
    assert "GUEST_HS_URL is not set" in errors[0].msg
    assert "python -m devtools" in str(errors[0].hint)
    assert "MAIN_HS_TOKEN is not set" in errors[1].msg


@override_settings(MAIN_HS_URL="matrix.example.org")
def test_a_homeserver_url_without_scheme_is_refused() -> None:
    assert ids(homeservers_configured(None)) == ["guestgate.E002"]


def test_the_same_as_token_on_both_homeservers_is_refused(settings) -> None:
    settings.MAIN_AS_TOKEN = settings.GUEST_AS_TOKEN

    assert ids(homeservers_configured(None)) == ["guestgate.E003"]


def test_an_empty_secret_key_is_reported(settings) -> None:
    settings.SECRET_KEY = ""

    assert ids(secret_key_set(None)) == ["guestgate.E010"]


def test_a_secret_is_read_from_its_file(tmp_path, monkeypatch) -> None:
    secret_file = tmp_path / "token"
    secret_file.write_text("s3cret\n")
    monkeypatch.setenv("MAIN_AS_TOKEN_FILE", str(secret_file))
    monkeypatch.setenv("MAIN_AS_TOKEN", "ignored")

    assert env_secret("MAIN_AS_TOKEN") == "s3cret"


def test_a_missing_secret_file_is_a_clear_error(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("MAIN_AS_TOKEN_FILE", str(tmp_path / "absent"))

    with pytest.raises(ImproperlyConfiguredEnv, match="MAIN_AS_TOKEN_FILE"):
        env_secret("MAIN_AS_TOKEN")


@pytest.mark.parametrize("raw", ["maybe", "2"])
def test_a_boolean_that_is_not_one_says_so(monkeypatch, raw: str) -> None:
    monkeypatch.setenv("GUESTGATE_DEBUG", raw)

    with pytest.raises(ImproperlyConfiguredEnv, match="GUESTGATE_DEBUG"):
        env_bool("GUESTGATE_DEBUG", False)


def test_a_number_that_is_not_one_says_so(monkeypatch) -> None:
    monkeypatch.setenv("MATRIX_RETRIES", "two")

    with pytest.raises(ImproperlyConfiguredEnv, match="MATRIX_RETRIES='two'"):
        env_int("MATRIX_RETRIES", 2)
