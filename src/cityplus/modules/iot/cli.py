"""`cityplus iot …` commands: the city simulator (also the top-level `cityplus simulate`)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

out = Console()


def simulate(
    rate: Annotated[float, typer.Option(min=0.01, help="Messages per second, over the whole fleet.")] = 5,
    duration: Annotated[float, typer.Option(min=0, help="Seconds to run; 0: until interrupted.")] = 0,
    transport: Annotated[str, typer.Option(help="mqtt, http or auto (MQTT when CITYPLUS_MQTT_URL is set).")
                         ] = "auto",
    faults: Annotated[bool, typer.Option(help="Inject spikes, dropouts, duplicates, late and malformed "
                                              "messages.")] = False,
    url: Annotated[str, typer.Option(help="CityPlus to send HTTP to (default: CITYPLUS_BASE_URL).")] = "",
    service_name: Annotated[str, typer.Option("--service", help="Tenant (fiware-service) of the fleet.")] = "",
    seed: Annotated[int | None, typer.Option(help="Random seed, for a repeatable run.")] = None,
) -> None:
    """Provision the simulated Chengdu fleet and drive it (all data labelled as simulated)."""
    from cityplus.api.app import build_context
    from cityplus.core.audit import Actor
    from cityplus.core.config import load_settings
    from cityplus.modules.iot import service
    from cityplus.modules.iot.fleet import fleet
    from cityplus.modules.iot.simulate import HttpSender, MqttSender, Sender, provision, run

    if transport not in ("auto", "mqtt", "http"):
        raise typer.BadParameter("mqtt, http or auto", param_hint="--transport")
    ctx = build_context(load_settings())
    tenant = service.tenant_name(service_name)
    devices = fleet(seed)
    with ctx.db.session() as session:
        groups, created = provision(session, Actor.system("cli:simulate"), tenant, devices)
    out.print(f"fleet: {len(devices)} devices ({created} new, {groups} new service groups)")
    mode = transport if transport != "auto" else ("mqtt" if ctx.settings.mqtt_url else "http")
    if mode == "mqtt" and not ctx.settings.mqtt_url:
        raise typer.BadParameter("CITYPLUS_MQTT_URL is not set", param_hint="--transport")
    sender: Sender = MqttSender(ctx.settings.mqtt_url) if mode == "mqtt" else \
        HttpSender(url or ctx.settings.base_url)
    out.print(f"sending {rate}/s over {mode}" + (" with faults" if faults else "") + " — Ctrl-C stops")
    try:
        report = run(devices, sender, rate=rate, duration=duration or None, faults=faults, seed=seed)
    except KeyboardInterrupt:
        sender.close()
        out.print("stopped")
        return
    ctx.db.dispose()
    out.print(f"sent {report.sent}: " + ", ".join(f"{k} × {v}" for k, v in sorted(report.results.items()))
              + ("; faults: " + ", ".join(f"{k} × {v}" for k, v in sorted(report.faults.items()))
                 if report.faults else ""))


def make_cli() -> typer.Typer:
    cli = typer.Typer(help="The device gateway: the city simulator.", no_args_is_help=True)
    cli.command("simulate")(simulate)
    return cli
