"""Screenshots of the pages, kept for a person to look at: ``var/screenshots/<name>.png``, each
with a small note of what it shows (``<name>.json``: the page or state, the viewport, the colour
scheme), and a contact sheet of them all, ``var/screenshots/index.html``, written at the end of
the test run. CI prints where they are and keeps them as the run's artefacts (``.ci/run``).
"""

from __future__ import annotations

import json
from html import escape
from pathlib import Path

from django.conf import settings
from playwright.sync_api import Page

#: Kept by CI as the test run's artefacts (and nothing else under var/).
SCREENSHOTS = Path(settings.BASE_DIR) / "var" / "screenshots"
INDEX = SCREENSHOTS / "index.html"


def screenshot(page: Page, name: str) -> Path:
    """The whole page as ``var/screenshots/<name>.png``, and its note for the contact sheet."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    viewport = page.viewport_size or {"width": 0, "height": 0}
    scheme = page.evaluate("matchMedia('(prefers-color-scheme: dark)').matches")
    note = {
        "name": name,
        "viewport": f"{viewport['width']}x{viewport['height']}",
        "scheme": "dark" if scheme else "light",
        "image": path.name,
    }
    path.with_suffix(".json").write_text(json.dumps(note, ensure_ascii=False))
    return path


def contact_sheet_write(directory: Path = SCREENSHOTS) -> int:
    """Write ``index.html`` in ``directory``: every screenshot there with its name, viewport and
    colour scheme, linked relatively (the folder can be moved or downloaded whole). Returns how
    many it lists; writes nothing when there are none."""
    notes = []
    for image in sorted(directory.glob("*.png")):
        note_file = image.with_suffix(".json")
        note = json.loads(note_file.read_text()) if note_file.exists() else {}
        notes.append(
            {
                "name": note.get("name", image.stem),
                "viewport": note.get("viewport", "?"),
                "scheme": note.get("scheme", "?"),
                "image": image.name,
            }
        )
    if not notes:
        return 0
    cards = "\n".join(
        f'<li><a href="{escape(n["image"])}"><img src="{escape(n["image"])}" alt="" '
        f'loading="lazy"></a><p><strong>{escape(n["name"])}</strong><br>'
        f"{escape(n['viewport'])}, {escape(n['scheme'])}</p></li>"
        for n in notes
    )
    (directory / "index.html").write_text(
        "<!doctype html>\n<html lang=en><meta charset=utf-8>"
        f"<title>GuestGate screenshots ({len(notes)})</title>\n<style>"
        "body{font-family:system-ui,sans-serif;margin:1rem}"
        "ul{list-style:none;padding:0;display:grid;gap:1rem;"
        "grid-template-columns:repeat(auto-fill,minmax(14rem,1fr))}"
        "img{width:100%;height:16rem;object-fit:cover;object-position:top;"
        "border:1px solid #888}p{margin:.25rem 0}</style>\n"
        f"<h1>GuestGate screenshots ({len(notes)})</h1>\n"
        "<p>Each page or state as the browser tests saw it; select one for the full image.</p>\n"
        f"<ul>\n{cards}\n</ul>\n",
        encoding="utf-8",
    )
    return len(notes)
