"""The scheduled AQI recomputation: once per period across all processes of a deployment.

Every process runs the loop; each round it tries to take or renew the database lease `environment-aqi-recompute`
(core/lease.py, compare-and-set in its own short transaction) for two periods (at least a minute). Only
the holder recomputes; the others skip the round. When the holder stops it gives the lease up; when it dies the
lease expires after at most two periods (or a minute) and another process takes over. The recomputation itself
(service.scheduled_recompute) runs in a second transaction, so a slow one never holds the lease row locked.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import Any

import structlog

from cityplus.core.audit import Actor
from cityplus.core.context import AppContext
from cityplus.modules.environment.settings import EnvironmentSettings, get_environment_settings

log = structlog.get_logger("cityplus.environment")
LEASE = "environment-aqi-recompute"
STATE = "environment"
MIN_LEASE = 60.0  # seconds: a short period must not let the lease lapse while a round is still running


@dataclass
class EnvironmentRuntime:
    settings: EnvironmentSettings
    holder: str
    task: asyncio.Task[None] | None = None
    rounds: list[Any] = field(default_factory=list)  # (holder, written) of this process's recomputations


def runtime(ctx: AppContext) -> EnvironmentRuntime:
    from cityplus.core.lease import holder_id

    state = ctx.module_state.get(STATE)
    if state is None:
        state = EnvironmentRuntime(settings=get_environment_settings(), holder=holder_id())
        ctx.module_state[STATE] = state
    return state  # type: ignore[no-any-return]


def tick(ctx: AppContext, holder: str, period: float) -> int | None:
    """One round: when `holder` holds (or takes) the lease, recompute and write the network's AQI; the number of
    stations whose index changed, or None when another process holds the lease."""
    from cityplus.core import lease
    from cityplus.modules.context import service as context
    from cityplus.modules.environment import service

    with ctx.db.session() as session:
        held = lease.acquire(session, LEASE, holder, max(2 * period, MIN_LEASE))
    if not held:
        return None
    with ctx.db.session() as session:
        return service.scheduled_recompute(session, context.core_context(ctx), Actor.system("environment.schedule"))


def release(ctx: AppContext, holder: str) -> None:
    from cityplus.core import lease

    with ctx.db.session() as session:
        lease.release(session, LEASE, holder)


async def loop(ctx: AppContext, rt: EnvironmentRuntime, period: float) -> None:
    """Every `period` seconds (the first round one period after start-up), a round of tick()."""
    while True:
        await asyncio.sleep(period)
        try:
            written = await asyncio.to_thread(tick, ctx, rt.holder, period)
            if written is not None:
                rt.rounds.append(written)
                del rt.rounds[:-100]
                log.info("environment.aqi_recomputed", written=written, holder=rt.holder)
        except Exception as exc:  # the database is away, say: try again next round
            log.warning("environment.aqi_recompute_failed", error=str(exc)[:300])


async def start(ctx: AppContext) -> None:
    rt = runtime(ctx)
    period = rt.settings.recompute_seconds
    if period > 0 and rt.task is None:
        rt.task = asyncio.create_task(loop(ctx, rt, period), name="cityplus-environment-recompute")


async def stop(ctx: AppContext) -> None:
    rt = ctx.module_state.get(STATE)
    if rt is None or rt.task is None:
        return
    rt.task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await rt.task
    rt.task = None
    with contextlib.suppress(Exception):  # else the lease simply expires
        await asyncio.to_thread(release, ctx, rt.holder)
