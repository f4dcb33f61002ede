"""The layers hold: the Matrix package stands alone, and only it speaks Matrix HTTP."""

from __future__ import annotations

import ast
import subprocess
import sys
from fnmatch import fnmatch
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

#: What `matrix` must not pull in: Django, Celery and its broker library, our Django apps.
NOT_IN_MATRIX = ("django*", "celery*", "kombu*", "guestgate*", "rooms*", "accounts*", "ops*")

#: Folders that are not GuestGate's code.
NOT_OURS = {".venv", "var", "node_modules", ".git"}


def test_the_matrix_package_imports_without_django() -> None:
    child = subprocess.run(
        [sys.executable, "-c", "import sys, matrix; print(sorted(sys.modules))"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    loaded = ast.literal_eval(child.stdout.strip())

    assert "matrix.client" in loaded
    assert [name for name in loaded if any(fnmatch(name, p) for p in NOT_IN_MATRIX)] == []


def test_nothing_outside_the_matrix_package_imports_its_http_plumbing() -> None:
    offenders = [
        f"{path.relative_to(ROOT)}:{line}"
        for path in _python_files_outside_matrix()
        for line in _lines_importing_matrix_http(path)
    ]

    assert offenders == []


def _python_files_outside_matrix() -> list[Path]:
    tops = [top for top in ROOT.iterdir() if top.name not in {*NOT_OURS, "matrix"}]
    return [
        path
        for top in tops
        for path in ([top] if top.is_file() else top.rglob("*.py"))
        if path.suffix == ".py"
    ]


def _lines_importing_matrix_http(path: Path) -> list[int]:
    lines = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
        else:
            continue
        if any(name == "matrix.http" or name.startswith("matrix.http.") for name in names):
            lines.append(node.lineno)
    return lines
