"""The contact sheet of the browser tests' screenshots (tests/browser/screenshots.py): every
image with its name, viewport and colour scheme, linked relatively so the folder can move."""

from __future__ import annotations

import json
from pathlib import Path

from tests.browser.screenshots import contact_sheet_write


def test_the_contact_sheet_lists_each_screenshot_with_its_viewport_linked_relatively(
    tmp_path: Path,
) -> None:
    (tmp_path / "home-phone-dark.png").write_bytes(b"\x89PNG")
    (tmp_path / "home-phone-dark.json").write_text(
        json.dumps({"name": "home-phone-dark", "viewport": "390x844", "scheme": "dark"})
    )
    (tmp_path / "a<b>.png").write_bytes(b"\x89PNG")  # no note: named after its file

    assert contact_sheet_write(tmp_path) == 2

    sheet = (tmp_path / "index.html").read_text()
    assert '<a href="home-phone-dark.png"><img src="home-phone-dark.png"' in sheet
    assert "<strong>home-phone-dark</strong><br>390x844, dark" in sheet
    assert "<strong>a&lt;b&gt;</strong>" in sheet
    assert str(tmp_path) not in sheet


def test_no_screenshots_no_contact_sheet(tmp_path: Path) -> None:
    assert contact_sheet_write(tmp_path) == 0
    assert not (tmp_path / "index.html").exists()
