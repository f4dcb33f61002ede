"""The organisation's look: its name, logo and accent colour, read once at start-up.

``GUESTGATE_ORG_NAME`` is shown in every page's header, title and on the poster;
``GUESTGATE_ORG_LOGO_URL`` beside it (an http(s) URL, a path on this site, or a static file's
path such as ``guestgate/logo.svg``); ``GUESTGATE_ACCENT_COLOR`` colours buttons, links and
focus rings. A value GuestGate cannot use stops start-up with the variable's name.

The strict CSP forbids inline styles, so the accent reaches pages as a tiny stylesheet of its
own (``/branding.css?v=<hash>``, cached for a year: the hash changes with the settings). Any
accent must stay readable: buttons get white or black text, whichever contrasts more, and
text in the accent colour (links) is darkened on light backgrounds and lightened on dark ones
until it reaches WCAG's 4.5:1, so an operator's pale yellow cannot fail axe-core.

Nothing here imports Django: settings.py reads this module.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import cached_property
from urllib.parse import urlsplit

from guestgate.env import ImproperlyConfiguredEnv

DEFAULT_NAME = "GuestGate"
DEFAULT_ACCENT = "#0b6bcb"
NAME_MAX_LENGTH = 80

#: The page and card backgrounds of static/guestgate/base.css (--bg, --surface), light and
#: dark: text in the accent colour is made readable on each (tests/unit/test_branding.py
#: checks that base.css still uses them).
LIGHT_BACKGROUNDS = ("#f4f5f7", "#ffffff")
DARK_BACKGROUNDS = ("#121417", "#1c2026")
#: WCAG AA for normal text; in dark mode a little more, as a mid-tone accent that barely
#: passes on near-black reads dim next to the light text around it.
READABLE = 4.5
READABLE_DARK = 6.0

_HEX = re.compile(r"#([0-9a-f]{3}|[0-9a-f]{6})")
#: A static file's path as collectstatic knows it: no scheme, no "..", no spaces or quotes.
_STATIC_PATH = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_./-]*")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class Colour:
    red: int
    green: int
    blue: int

    @classmethod
    def parse(cls, text: str) -> Colour:
        """``#rrggbb`` or ``#rgb``, any case; ValueError otherwise."""
        match = _HEX.fullmatch(text.strip().lower())
        if not match:
            raise ValueError(text)
        digits = match.group(1)
        if len(digits) == 3:
            digits = "".join(digit * 2 for digit in digits)
        red, green, blue = (int(digits[i : i + 2], 16) for i in (0, 2, 4))
        return cls(red, green, blue)

    @property
    def hex(self) -> str:
        return f"#{self.red:02x}{self.green:02x}{self.blue:02x}"

    def luminance(self) -> float:
        """Relative luminance (WCAG 2)."""

        def linear(channel: int) -> float:
            value = channel / 255
            return value / 12.92 if value <= 0.04045 else ((value + 0.055) / 1.055) ** 2.4

        return 0.2126 * linear(self.red) + 0.7152 * linear(self.green) + 0.0722 * linear(self.blue)

    def contrast(self, other: Colour) -> float:
        """WCAG contrast ratio, 1 to 21."""
        lighter, darker = sorted((self.luminance(), other.luminance()), reverse=True)
        return (lighter + 0.05) / (darker + 0.05)

    def towards(self, other: Colour, share: float) -> Colour:
        """This colour mixed with ``share`` (0 to 1) of ``other``."""
        return Colour(
            *(
                round(mine + (theirs - mine) * share)
                for mine, theirs in zip(
                    (self.red, self.green, self.blue),
                    (other.red, other.green, other.blue),
                    strict=True,
                )
            )
        )


BLACK = Colour(0, 0, 0)
WHITE = Colour(255, 255, 255)


def readable_on(
    colour: Colour, backgrounds: tuple[str, ...], *, towards: Colour, ratio: float = READABLE
) -> Colour:
    """``colour`` itself if text in it is readable on every background, else the least mix of
    it with ``towards`` (black for light backgrounds, white for dark ones) that is."""
    grounds = [Colour.parse(ground) for ground in backgrounds]
    for step in range(101):
        mixed = colour.towards(towards, step / 100)
        if all(mixed.contrast(ground) >= ratio for ground in grounds):
            return mixed
    return towards


@dataclass(frozen=True)
class Branding:
    name: str
    #: An absolute http(s) URL, a path on this site ("/…"), a static file's path, or "".
    logo: str
    accent: Colour

    @property
    def logo_is_static(self) -> bool:
        return bool(self.logo) and not self.logo.startswith(("/", "http://", "https://"))

    @property
    def logo_origin(self) -> str:
        """The logo's origin when it is on another site (the CSP's img-src must name it)."""
        if not self.logo.startswith(("http://", "https://")):
            return ""
        parts = urlsplit(self.logo)
        return f"{parts.scheme}://{parts.netloc}"

    @cached_property
    def stylesheet(self) -> str:
        """The CSS custom properties base.css reads for the accent (``/branding.css``)."""
        on_accent = max((WHITE, BLACK), key=self.accent.contrast)
        light_text = readable_on(self.accent, LIGHT_BACKGROUNDS, towards=BLACK)
        dark_text = readable_on(self.accent, DARK_BACKGROUNDS, towards=WHITE, ratio=READABLE_DARK)
        return (
            "/* The organisation's accent (GUESTGATE_ACCENT_COLOR), made by guestgate/branding.py"
            " */\n"
            f":root {{ --accent: {self.accent.hex}; --on-accent: {on_accent.hex}; "
            f"--accent-text: {light_text.hex}; }}\n"
            "@media (prefers-color-scheme: dark) {\n"
            f"  :root {{ --accent-text: {dark_text.hex}; }}\n"
            "}\n"
        )

    @cached_property
    def version(self) -> str:
        """Changes whenever the stylesheet does: the key of its long caching."""
        return hashlib.sha256(self.stylesheet.encode()).hexdigest()[:16]


def branding_read(*, name: str, logo: str, accent: str) -> Branding:
    """The branding from the three settings' raw values (empty: the default), or
    ImproperlyConfiguredEnv saying which one is wrong and what would do."""
    name = name.strip() or DEFAULT_NAME
    if len(name) > NAME_MAX_LENGTH or _CONTROL.search(name):
        raise ImproperlyConfiguredEnv(
            f"GUESTGATE_ORG_NAME={name!r}: use at most {NAME_MAX_LENGTH} characters and no "
            "control characters"
        )
    try:
        colour = Colour.parse(accent or DEFAULT_ACCENT)
    except ValueError:
        raise ImproperlyConfiguredEnv(
            f"GUESTGATE_ACCENT_COLOR={accent!r} is not a colour: use #rrggbb (or #rgb), "
            f"e.g. {DEFAULT_ACCENT}"
        ) from None
    return Branding(name=name, logo=_logo_checked(logo.strip()), accent=colour)


def _logo_checked(logo: str) -> str:
    if not logo:
        return ""
    if logo.startswith(("http://", "https://")):
        parts = urlsplit(logo)
        if parts.netloc and not re.search(r"[\s\"'<>\\]", logo):
            return logo
    elif logo.startswith("/"):
        if _STATIC_PATH.fullmatch(logo[1:]) and ".." not in logo:
            return logo
    elif _STATIC_PATH.fullmatch(logo) and ".." not in logo:
        return logo
    raise ImproperlyConfiguredEnv(
        f"GUESTGATE_ORG_LOGO_URL={logo!r}: use an https:// URL, a path on this site "
        "(/logo.svg) or a static file's path (guestgate/logo.svg)"
    )
