"""Runtime state of the context module (one per application): settings and the JSON-LD context resolver."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from cityplus.core.context import AppContext
from cityplus.modules.context import jsonld
from cityplus.modules.context.settings import ContextSettings, get_context_settings


@dataclass
class ContextRuntime:
    settings: ContextSettings
    resolver: jsonld.ContextResolver


def runtime(ctx: AppContext) -> ContextRuntime:
    """The module's runtime state, created on first use (start-up, or the first request in tests)."""
    state = ctx.module_state.get("context")
    if state is None:
        settings = get_context_settings()

        def hosted(url: str) -> dict[str, Any] | None:
            from cityplus.modules.context.models import HostedContext

            with ctx.db.session(readonly=True) as session:
                row = session.scalar(select(HostedContext).where(HostedContext.url == url))
                return dict(row.body) if row is not None else None

        resolver = jsonld.ContextResolver(preload=settings.preload, allow_remote=settings.remote_contexts,
                                          hosted=hosted)
        state = ContextRuntime(settings=settings, resolver=resolver)
        ctx.module_state["context"] = state
    return state  # type: ignore[no-any-return]


PRUNE_EVERY = 3600.0  # seconds between history retention runs


def prune_history(ctx: AppContext) -> int:
    """Delete history older than its entity type's retention (settings history_retention); rows deleted."""
    from cityplus.modules.context import temporal

    rt = runtime(ctx)
    retention = dict(rt.settings.history_retention)
    if not retention:
        return 0
    default = retention.pop("*", None)
    core = rt.resolver.core()
    by_type = {core.expand_term(t): days for t, days in retention.items()}
    with ctx.db.session() as session:
        return temporal.prune(session, by_type, default)


async def _prune_loop(ctx: AppContext) -> None:
    import asyncio

    import structlog

    log = structlog.get_logger("cityplus.context")
    while True:
        try:
            removed = await asyncio.to_thread(prune_history, ctx)
            if removed:
                log.info("context.history_pruned", rows=removed)
        except Exception as exc:  # the database is down, say: try again next time
            log.warning("context.history_prune_failed", error=str(exc)[:300])
        await asyncio.sleep(PRUNE_EVERY)


async def start(ctx: AppContext) -> None:
    import asyncio

    from cityplus.modules.context import notifier

    runtime(ctx)
    await notifier.start(ctx)
    ctx.module_state["context.prune"] = asyncio.create_task(_prune_loop(ctx), name="cityplus-context-prune")


async def stop(ctx: AppContext) -> None:
    import asyncio
    import contextlib

    from cityplus.modules.context import notifier

    task = ctx.module_state.pop("context.prune", None)
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
    await notifier.stop(ctx)
