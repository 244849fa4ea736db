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

    @cli.command("remind")
    def remind() -> None:
        """Send the supervision reminders due now (what the scheduled job does; safe beside running servers)."""
        from cityplus.api.app import build_context
        from cityplus.core import notify
        from cityplus.core.lease import holder_id
        from cityplus.modules.plan import service
        from cityplus.modules.plan.settings import PlanSettings

        ctx = build_context()
        run = service.run_reminders(ctx.db, notify.SmtpSender(ctx.settings), PlanSettings(), ctx.settings.base_url,
                                    holder=holder_id(), default_locale=ctx.settings.default_locale)
        if not run.ran:
            out.print("another process is running the reminder job; nothing sent")
            raise typer.Exit(1)
        out.print(f"reminders: {run.due_soon} due soon, {run.overdue} overdue; {run.inbox} inbox messages, "
                  f"{run.mails} mails")

    @cli.command("export")
    def export(path: str = typer.Argument(..., help="the XLSX file to write")) -> None:
        """Write tasks, work items and latest reports to an XLSX file (as the plan office)."""
        from pathlib import Path

        from cityplus.api.app import build_context
        from cityplus.modules.plan import service
        from cityplus.modules.plan.settings import PlanSettings

        ctx = build_context()
        with ctx.db.session() as session:
            data = service.export_xlsx(session, _office_actor(session), service.city_today(),
                                       PlanSettings().warn_workdays)
        Path(path).write_bytes(data)
        out.print(f"wrote {path}")

    @cli.command("quarterly")
    def quarterly(year: int = typer.Argument(..., min=2000, max=2100), quarter: int = typer.Argument(..., min=1, max=4),
                  path: str = typer.Argument(..., help="the PDF file to write")) -> None:
        """Write the quarterly supervision report (PDF) of one quarter."""
        from pathlib import Path

        from cityplus.api.app import build_context
        from cityplus.modules.plan import service
        from cityplus.modules.plan.settings import PlanSettings

        ctx = build_context()
        with ctx.db.session() as session:
            data = service.quarterly_pdf(session, year, quarter, PlanSettings().warn_workdays)
        Path(path).write_bytes(data)
        out.print(f"wrote {path}")

    return cli


def _office_actor(session):  # type: ignore[no-untyped-def]
    """The CLI acts as the plan office (whoever runs it has the server's own access)."""
    from cityplus.core.audit import Actor
    from cityplus.modules.plan import service

    return Actor(username="cli", org_code=service.office_org(session), role="department_staff")
