"""`cityplus plan …` commands."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table


def make_cli() -> typer.Typer:
    cli = typer.Typer(help="The action plan: areas, tasks, coverage.", no_args_is_help=True)
    out = Console()

    @cli.command("load")
    def load() -> None:
        """Create or refresh the plan's areas and tasks from the packaged data."""
        from cityplus.api.app import build_context
        from cityplus.core.audit import Actor
        from cityplus.modules.plan import service

        ctx = build_context()
        with ctx.db.session() as session:
            n = service.load_plan(session, Actor.system("cli"))
        out.print(f"plan loaded ({n} rows changed)")

    @cli.command("coverage")
    def coverage() -> None:
        """Show which modules serve each of the 46 tasks."""
        from cityplus.api.app import build_context
        from cityplus.modules.plan import service

        ctx = build_context()
        table = Table("task", "title", "modules")
        with ctx.db.session() as session:
            for row in service.coverage(session, ctx.registry):
                table.add_row(f"({row.task.numeral}) {row.task.number}", row.task.title_zh,
                              ", ".join(m.name for m in row.modules) or "—")
        out.print(table)

    return cli
