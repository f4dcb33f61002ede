"""CI's report of the screenshots (.ci/screenshots-report, run by .ci/run at its end, also
after a failure): where they are, how many, and a copy for the artefacts when asked."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from django.conf import settings

REPORT = Path(settings.BASE_DIR) / ".ci" / "screenshots-report"
RUN = Path(settings.BASE_DIR) / ".ci" / "run"


def report(checkout: Path, **env: str) -> str:
    answer = subprocess.run(
        [str(REPORT)], cwd=checkout, env={**os.environ, **env}, capture_output=True, text=True
    )
    assert answer.returncode == 0, answer.stderr
    return answer.stdout


def test_ci_says_where_the_screenshots_are_and_copies_them_for_the_artefacts(
    tmp_path: Path,
) -> None:
    shots = tmp_path / "checkout" / "var" / "screenshots"
    shots.mkdir(parents=True)
    for name in ("home-phone", "home-desktop"):
        (shots / f"{name}.png").write_bytes(b"\x89PNG")
    (shots / "index.html").write_text("<!doctype html>")
    artefacts = tmp_path / "artefacts"

    said = report(tmp_path / "checkout", GUESTGATE_ARTIFACTS_DIR=str(artefacts))

    assert f"Screenshots: 2 in {shots} (contact sheet: {shots}/index.html)" in said
    assert f"Screenshots copied to {artefacts}/screenshots" in said
    copied = sorted(p.name for p in (artefacts / "screenshots").iterdir())
    assert copied == ["home-desktop.png", "home-phone.png", "index.html"]


def test_no_screenshots_is_said_and_nothing_is_copied(tmp_path: Path) -> None:
    said = report(tmp_path, GUESTGATE_ARTIFACTS_DIR=str(tmp_path / "artefacts"))

    assert said.startswith("Screenshots: 0 in ")
    assert not (tmp_path / "artefacts").exists()


@pytest.mark.parametrize(("last_step", "status"), [("false", 1), ("exit 3", 3), ("true", 0)])
def test_the_ci_run_reports_them_at_its_end_and_keeps_its_exit_status(
    tmp_path: Path, last_step: str, status: int
) -> None:
    """.ci/run's own start (up to its trap), then a failing or passing step instead of
    `make lint` and `make test`."""
    head = RUN.read_text().split("\ntrap ", 1)
    ci = tmp_path / ".ci"
    ci.mkdir()
    shutil.copy(REPORT, ci / "screenshots-report")
    (ci / "run").write_text(f"{head[0]}\ntrap {head[1].splitlines()[0]}\n{last_step}\n")
    (tmp_path / "var" / "screenshots").mkdir(parents=True)
    (tmp_path / "var" / "screenshots" / "lobby-phone.png").write_bytes(b"\x89PNG")

    answer = subprocess.run(["bash", str(ci / "run")], capture_output=True, text=True)

    assert answer.returncode == status
    assert f"Screenshots: 1 in {tmp_path}/var/screenshots" in answer.stdout
