"""Docs are tested: every setting, CLI command, module and scope is documented."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer.main

from cityplus.cli import app as cli_app
from cityplus.core.config import Settings
from cityplus.core.modules import ModuleRegistry

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text(encoding="utf-8")
DOCS = README + "".join(p.read_text(encoding="utf-8") for p in (REPO / "docs").rglob("*.md"))


def test_every_setting_is_in_the_readme() -> None:
    missing = [f"CITYPLUS_{n.upper()}" for n in Settings.model_fields if f"CITYPLUS_{n.upper()}" not in README]
    assert missing == []


def _commands(group: Any, prefix: str) -> list[str]:
    out = []
    for name, cmd in group.commands.items():
        full = f"{prefix} {name}"
        if hasattr(cmd, "commands"):  # a group (Typer may use its own click fork, so no isinstance)
            out.extend(_commands(cmd, full))
        else:
            out.append(full)
    return out


def test_every_cli_command_is_in_the_readme() -> None:
    group = typer.main.get_command(cli_app)
    commands = _commands(group, "cityplus")
    assert "cityplus users create" in commands
    missing = [c for c in commands if c not in README]
    assert missing == []


def test_every_module_has_a_doc_and_every_scope_is_documented() -> None:
    registry = ModuleRegistry.discover()
    for m in registry:
        assert (REPO / "docs" / "modules" / f"{m.name}.md").is_file(), f"docs/modules/{m.name}.md missing"
    missing = [s.name for s in registry.all_scopes() if f"`{s.name}`" not in DOCS]
    assert missing == []


def test_quickstart_is_exactly_two_commands() -> None:
    quick = README.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    blocks = [b.split("```", 1)[0].strip() for b in quick.split("```sh")[1:]]
    assert blocks == ["make run", "make test"]
