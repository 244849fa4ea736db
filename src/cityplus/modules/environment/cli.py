"""`cityplus environment …` commands."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table


def make_cli() -> typer.Typer:
    cli = typer.Typer(help="Environment: air-quality index of the monitoring network.", no_args_is_help=True)
    out = Console()

    @cli.command("recompute")
    def recompute() -> None:
        """Compute every station's real-time AQI, write it onto the station entities and show the city's."""
        from cityplus.api.app import build_context
        from cityplus.core.audit import Actor
        from cityplus.modules.context import service as context
        from cityplus.modules.environment import service

        ctx = build_context()
        with ctx.db.session() as session:
            n = service.recompute(session, context.core_context(ctx), Actor.system("cli"))
        table = Table("area", "stations", "AQI", "category", "primary")
        for area in [n.city, *n.districts]:
            r = area.result
            table.add_row(area.name, f"{area.stations_used}/{area.stations_total}",
                          str(r.aqi) if r and r.aqi is not None else "—",
                          r.category.category_zh if r and r.category else "—",
                          ", ".join(r.primary_pollutants) if r else "")
        out.print(table)

    return cli
