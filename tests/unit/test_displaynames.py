"""The display-name rules of DESIGN.md, one class of bad input per test."""

from __future__ import annotations

import pytest

from accounts.displaynames import CleanName, DisplayNameRejected, clean_display_name

SUFFIX = " (Guest)"
MODERATORS = ["Mona Moderator", "@mona:main.example"]


def clean(raw: str) -> CleanName:
    return clean_display_name(raw, suffix=SUFFIX, protected_names=MODERATORS)


def rejection(raw: str) -> str:
    with pytest.raises(DisplayNameRejected) as caught:
        clean(raw)
    return caught.value.code


def test_an_ordinary_name_gets_the_guest_suffix() -> None:
    assert clean("Alice") == CleanName(typed="Alice", shown="Alice (Guest)")


def test_names_are_nfc_normalised() -> None:
    decomposed = "Zoe\u0308"  # e + combining diaeresis
    assert clean(decomposed).typed == "Zo\u00eb"


@pytest.mark.parametrize(
    "raw",
    [
        "Al\u200bice",  # zero-width space
        "Al\u202eice",  # right-to-left override
        "Al\u2066ice\u2069",  # isolates
        "Al\u00adice",  # soft hyphen
        "Al\x00i\x07ce",  # controls
        "\ufeffAlice",  # byte order mark
    ],
)
def test_hidden_and_control_characters_are_removed(raw: str) -> None:
    assert clean(raw).typed == "Alice"


def test_spacing_is_trimmed_and_collapsed() -> None:
    assert clean("  Alice \t\u00a0 Smith \n").typed == "Alice Smith"


@pytest.mark.parametrize("raw", ["", "   ", "\u200b\u200d", "\x00"])
def test_a_name_that_is_empty_after_cleaning_is_refused(raw: str) -> None:
    assert rejection(raw) == "name.empty"


def test_sixty_four_characters_are_allowed_and_sixty_five_are_not() -> None:
    assert clean("a" * 64).typed == "a" * 64
    assert rejection("a" * 65) == "name.too_long"


def test_the_length_counts_after_cleaning() -> None:
    assert clean("a" * 64 + "\u200b" * 10).typed == "a" * 64


@pytest.mark.parametrize(
    "raw", ["@bob:example.org", "bob:example.org", "I am @mona:main.example", "x:matrix.org:8448"]
)
def test_names_shaped_like_matrix_ids_are_refused(raw: str) -> None:
    assert rejection(raw) == "name.matrix_id"


@pytest.mark.parametrize(
    "raw",
    [
        "Mona Moderator",
        "mona moderator",
        "M0na  Moderat0r",
        "Mona Modérator",
        "MONA",
        "\u041cona Moderator",  # a Cyrillic capital Em first
    ],
)
def test_look_alikes_of_a_moderator_are_refused(raw: str) -> None:
    assert rejection(raw) == "name.imitates_member"


def test_a_name_merely_containing_a_moderators_name_is_fine() -> None:
    assert clean("Mona's sister").typed == "Mona's sister"


def test_the_suffix_is_added_even_if_the_guest_typed_it() -> None:
    assert clean("Bob (Guest)").shown == "Bob (Guest) (Guest)"


def test_emoji_and_scripts_other_than_latin_are_welcome() -> None:
    assert clean("Jürgen 🎉").typed == "Jürgen 🎉"
    assert clean("山田 太郎").typed == "山田 太郎"
