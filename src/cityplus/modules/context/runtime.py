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


async def start(ctx: AppContext) -> None:
    runtime(ctx)
