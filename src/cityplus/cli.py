"""The `cityplus` command line: serve, config, database, demo city, users, tokens, audit."""

from __future__ import annotations

import getpass
import json
import sys
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from cityplus.core.audit import Actor
from cityplus.core.config import ConfigError, Settings, load_settings

app = typer.Typer(help="CityPlus: the open \"Internet+\" city platform.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
config_app = typer.Typer(help="Configuration.", no_args_is_help=True)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
demo_app = typer.Typer(help="The demo city.", no_args_is_help=True)
users_app = typer.Typer(help="User accounts.", no_args_is_help=True)
tokens_app = typer.Typer(help="API tokens.", no_args_is_help=True)
audit_app = typer.Typer(help="The audit log.", no_args_is_help=True)
orgs_app = typer.Typer(help="Organisations (departments, districts).", no_args_is_help=True)
for sub, name in ((config_app, "config"), (db_app, "db"), (demo_app, "demo"), (users_app, "users"),
                  (tokens_app, "tokens"), (audit_app, "audit"), (orgs_app, "orgs")):
    app.add_typer(sub, name=name)

err = Console(stderr=True)
out = Console()


def _settings() -> Settings:
    try:
        return load_settings()
    except ConfigError as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None


def _ctx():  # type: ignore[no-untyped-def]
    from cityplus.api.app import build_context

    try:
        return build_context(_settings())
    except ConfigError as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None


def _cli_actor() -> Actor:
    try:
        who = getpass.getuser()
    except Exception:  # no passwd entry in some containers
        who = "unknown"
    return Actor.system(f"cli:{who}"[:64])


def _fail(message: str, code: int = 1) -> typer.Exit:
    err.print(f"[red]error:[/red] {message}")
    return typer.Exit(code)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    workers: Annotated[int, typer.Option(min=1, max=64, help="Worker processes.")] = 1,
    reload: Annotated[bool, typer.Option(help="Reload on code changes (development).")] = False,
) -> None:
    """Serve the portal and APIs."""
    import uvicorn

    from cityplus.core.logging import configure_logging

    settings = _settings()
    settings.ensure_secret_key()
    if workers > 1 and settings.is_sqlite:
        err.print("[yellow]note:[/yellow] several workers share one SQLite file; use PostgreSQL for a city")
    if workers > 1 and not settings.bus_url:
        err.print("[yellow]note:[/yellow] with several workers set CITYPLUS_BUS_URL=nats://… so events are shared")
    configure_logging(settings.log_format)
    err.print(f"CityPlus serving on http://{host}:{port}  (public URL {settings.base_url})")
    uvicorn.run("cityplus.api.app:create_app", factory=True, host=host, port=port, workers=workers,
                reload=reload, log_config=None, proxy_headers=True, server_header=False)


@config_app.command("show")
def config_show(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Print the effective configuration, secrets masked."""
    masked = _settings().masked()
    if as_json:
        print(json.dumps(masked, indent=2, ensure_ascii=False))
        return
    table = Table("setting", "value")
    for k, v in masked.items():
        table.add_row(f"CITYPLUS_{k}", str(v))
    out.print(table)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply every pending migration (core and modules)."""
    from cityplus.core import migrate

    ctx = _ctx()
    migrate.upgrade(ctx.db, ctx.registry)
    state = migrate.current(ctx.db, ctx.registry)
    out.print(f"database at {', '.join(state['applied'])}")  # type: ignore[arg-type]


@db_app.command("current")
def db_current() -> None:
    """Show applied revisions; exit 1 when migrations are pending."""
    from cityplus.core import migrate

    ctx = _ctx()
    state = migrate.current(ctx.db, ctx.registry)
    out.print(f"applied: {', '.join(state['applied']) or '(none)'}")  # type: ignore[arg-type]
    out.print(f"heads:   {', '.join(state['heads'])}")  # type: ignore[arg-type]
    if not state["up_to_date"]:
        out.print("[yellow]migrations pending: run `cityplus db upgrade`[/yellow]")
        raise typer.Exit(1)
    out.print("up to date")


@demo_app.command("load")
def demo_load() -> None:
    """Load the demo city (organisations, plan, demo accounts, module data); safe to repeat."""
    from cityplus.core import demo

    ctx = _ctx()
    demo.load(ctx, _cli_actor())
    out.print("demo city loaded. Demo accounts (password for all: "
              f"[bold]{demo.DEMO_PASSWORD}[/bold]):")
    for acc in demo.DEMO_ACCOUNTS:
        out.print(f"  {acc.username:<12} {acc.role:<18} {acc.org or ''}")


@orgs_app.command("load")
def orgs_load() -> None:
    """Create or update the organisations from the packaged list."""
    from cityplus.core.identity import service as identity

    ctx = _ctx()
    with ctx.db.session() as session:
        n = identity.load_organisations(session, _cli_actor())
    out.print(f"{n} organisations created or updated")


@orgs_app.command("list")
def orgs_list(kind: Annotated[str | None, typer.Option(help="Only this kind.")] = None) -> None:
    """List organisations."""
    from cityplus.core.identity import service as identity

    ctx = _ctx()
    table = Table("code", "name", "English", "kind")
    with ctx.db.session() as session:
        for o in identity.list_organisations(session, kind=kind):
            table.add_row(o.code, o.name_zh, o.name_en, o.kind)
    out.print(table)


@users_app.command("create")
def users_create(
    username: Annotated[str, typer.Option(help="Sign-in name.")],
    role: Annotated[str, typer.Option(help="citizen, enterprise, department_staff, department_admin, "
                                            "platform_admin or developer.")],
    password: Annotated[str | None, typer.Option(help="Password; prompted when omitted.")] = None,
    org: Annotated[str | None, typer.Option(help="Organisation code (required for department roles).")] = None,
    display_name: Annotated[str, typer.Option(help="Name shown in the portal.")] = "",
) -> None:
    """Create a user account."""
    from cityplus.core.errors import DomainError
    from cityplus.core.identity import service as identity

    if password is None:
        if not sys.stdin.isatty():
            raise _fail("--password is required when not on a terminal", 2)
        password = typer.prompt("password", hide_input=True, confirmation_prompt=True)
    ctx = _ctx()
    try:
        with ctx.db.session() as session:
            user = identity.create_user(session, _cli_actor(), username=username, password=password, role=role,
                                        org_code=org, display_name=display_name)
            uid = user.id
    except DomainError as exc:
        details = "; ".join(f"{e['field']}: {e['message']}" for e in exc.errors)
        raise _fail(f"{exc.detail}{' — ' + details if details else ''}") from None
    out.print(f"user {username} created (id {uid}, role {role})")


@tokens_app.command("create")
def tokens_create(
    user: Annotated[str, typer.Option(help="User name the token acts as.")],
    scope: Annotated[list[str], typer.Option(help="Scope to grant; repeat for several.")],
    days: Annotated[int | None, typer.Option(help="Days until expiry (default 90).")] = 90,
    name: Annotated[str, typer.Option(help="Label for the token.")] = "cli",
) -> None:
    """Issue an API token and print it alone on stdout (shown once)."""
    from cityplus.core.errors import DomainError
    from cityplus.core.identity import service as identity

    ctx = _ctx()
    try:
        with ctx.db.session() as session:
            u = identity.get_user_by_name(session, user)
            if u is None:
                raise _fail(f"no user named {user!r}")
            issued = identity.create_token(session, _cli_actor(), u, name=name, scopes=scope, days=days,
                                           all_scopes=ctx.registry.all_scopes())
            secret = issued.secret
    except DomainError as exc:
        details = "; ".join(e["message"] for e in exc.errors)
        raise _fail(f"{exc.detail}{' — ' + details if details else ''}") from None
    print(secret)


@audit_app.command("verify")
def audit_verify() -> None:
    """Check the audit log's hash chain; exit 1 naming the first broken entry."""
    from cityplus.core import audit

    ctx = _ctx()
    with ctx.db.session() as session:
        result = audit.verify(session)
    if result.ok:
        out.print(f"audit chain intact: {result.checked} entries")
        return
    err.print(f"[red]audit chain broken at entry {result.first_broken_seq}:[/red] {result.reason} "
              f"({result.checked} entries verified before it)")
    raise typer.Exit(1)


def _add_module_commands() -> None:
    """Attach each module's CLI group as `cityplus <module> …`."""
    from cityplus.core.modules import ModuleRegistry

    try:
        registry = ModuleRegistry.discover()
    except Exception as exc:  # a broken third-party module must not take the whole CLI down
        err.print(f"[yellow]warning:[/yellow] modules not loaded: {exc}")
        return
    for m in registry:
        if m.cli is not None:
            app.add_typer(m.cli(), name=m.name)


_add_module_commands()


def _add_simulate() -> None:
    """`cityplus simulate`, the name the city simulator has in issue 6: the iot module's `cityplus iot simulate`."""
    try:
        from cityplus.modules.iot.cli import simulate
    except ImportError:  # a deployment without the device gateway
        return
    app.command("simulate", help="Drive the simulated Chengdu device fleet (same as `cityplus iot simulate`).")(
        simulate)


_add_simulate()
