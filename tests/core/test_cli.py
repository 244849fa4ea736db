"""The `cityplus` command line, run as a real subprocess against a real database file."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cli")


def run(
    workdir: Path,
    *args: str,
    check: bool = True,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("CITYPLUS_")}
    full_env.update({"CITYPLUS_VAR_DIR": str(workdir / "var"), "COLUMNS": "200", **(env or {})})
    proc = subprocess.run(
        [sys.executable, "-m", "cityplus", *args],
        cwd=workdir,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"cityplus {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def test_cli_end_to_end(workdir: Path) -> None:
    pending = run(workdir, "db", "current", check=False)
    assert pending.returncode == 1 and "pending" in pending.stdout
    run(workdir, "db", "upgrade")
    assert "up to date" in run(workdir, "db", "current").stdout
    out = run(workdir, "demo", "load").stdout
    assert "cityplus-demo" in out and "admin" in out
    run(workdir, "demo", "load")  # idempotent
    db = sqlite3.connect(workdir / "var" / "cityplus.db")
    assert db.execute("select count(*) from core_organisations").fetchone()[0] == 62
    assert db.execute("select count(*) from plan_tasks").fetchone()[0] == 46
    assert db.execute("select count(*) from core_users where username='admin'").fetchone()[0] == 1

    created = run(
        workdir,
        "users",
        "create",
        "--username",
        "wang.wu",
        "--password",
        "long-enough-1",
        "--role",
        "department_staff",
        "--org",
        "hbj",
    )
    assert "wang.wu" in created.stdout
    bad = run(workdir, "users", "create", "--username", "x", "--password", "short", "--role", "mayor", check=False)
    assert bad.returncode == 1 and "username" in bad.stderr and "role" in bad.stderr

    tok = run(workdir, "tokens", "create", "--user", "wang.wu", "--scope", "account", "--days", "7")
    secret = tok.stdout.strip()
    assert secret.startswith("cp_") and "\n" not in secret
    denied = run(workdir, "tokens", "create", "--user", "wang.wu", "--scope", "audit.read", check=False)
    assert denied.returncode == 1 and "audit.read" in denied.stderr

    shown = run(workdir, "config", "show", "--json", env={"CITYPLUS_SECRET_KEY": "hunter2hunter2"}).stdout
    assert "hunter2" not in shown and "********" in shown

    assert "intact" in run(workdir, "audit", "verify").stdout
    db.execute("update core_audit_log set actor='mallory' where seq=3")
    db.commit()
    broken = run(workdir, "audit", "verify", check=False)
    assert broken.returncode == 1 and "entry 3" in broken.stderr
    db.close()


def test_invalid_setting_stops_with_its_name(workdir: Path) -> None:
    proc = run(workdir, "config", "show", check=False, env={"CITYPLUS_MAX_BODY_BYTES": "lots"})
    assert proc.returncode == 2 and "CITYPLUS_MAX_BODY_BYTES" in proc.stderr
