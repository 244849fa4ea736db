"""`cityplus plan remind / export / quarterly` as real subprocesses on a demo database."""

from __future__ import annotations

from io import BytesIO
from pathlib import Path

import pytest
from openpyxl import load_workbook

from tests.core.test_cli import run

pytestmark = pytest.mark.slow


def test_remind_export_and_quarterly(tmp_path: Path) -> None:
    run(tmp_path, "db", "upgrade")
    run(tmp_path, "demo", "load")
    first = run(tmp_path, "plan", "remind").stdout
    assert "overdue" in first and "inbox messages" in first
    assert "0 due soon, 0 overdue" in run(tmp_path, "plan", "remind").stdout  # each reminder is sent once
    run(tmp_path, "plan", "export", "items.xlsx")
    wb = load_workbook(BytesIO((tmp_path / "items.xlsx").read_bytes()))
    items = list(wb["工作事项 Items"].iter_rows(values_only=True))
    assert len(items) > 100 and items[1][0] == "1.1"
    run(tmp_path, "plan", "quarterly", "2016", "3", "q3.pdf")
    assert (tmp_path / "q3.pdf").read_bytes().startswith(b"%PDF-")
    bad = run(tmp_path, "plan", "quarterly", "2016", "5", "x.pdf", check=False)
    assert bad.returncode != 0 and not (tmp_path / "x.pdf").exists()
