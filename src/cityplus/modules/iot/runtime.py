"""Runtime state of the device gateway (one per application): settings, metrics, the MQTT gateway, health checks."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import structlog
from prometheus_client import Counter

from cityplus.core.context import AppContext
from cityplus.modules.iot.ratelimit import RateLimiter
from cityplus.modules.iot.settings import IotSettings

log = structlog.get_logger("cityplus.iot")


@dataclass
class IotMetrics:
    """Prometheus collectors of the gateway, registered on the application's registry."""

    measurements: Counter
    dead_letters: Counter
    duplicates: Counter
    rate_limited: Counter

    @classmethod
    def register(cls, registry: Any) -> IotMetrics:
        return cls(
            measurements=Counter("cityplus_iot_measurements_total", "Device measurements applied to entities",
                                 ["transport"], registry=registry),
            dead_letters=Counter("cityplus_iot_dead_letters_total", "Device messages put in the dead-letter store",
                                 ["reason"], registry=registry),
            duplicates=Counter("cityplus_iot_duplicates_total", "Measurements skipped as already applied",
                               ["transport"], registry=registry),
            rate_limited=Counter("cityplus_iot_rate_limited_total", "Device messages refused over the device's rate",
                                 ["transport"], registry=registry),
        )


@dataclass
class IotRuntime:
    ctx: AppContext
    settings: IotSettings
    metrics: IotMetrics
    tasks: list[Any] = field(default_factory=list)
    mqtt: Any = None  # the MQTT gateway while this process holds its lease (mqtt.MqttGateway)
    holder: str = ""  # this process's lease holder id
    limiter: RateLimiter = field(default_factory=lambda: RateLimiter(20, 200))
    # device pk → ((device modified, group id, group modified), mapping Profile): see ingest._profile
    profiles: dict[int, tuple[Any, Any]] = field(default_factory=dict)
    simulator: Any = None  # the embedded city simulator (simulate.EmbeddedSimulator) when CITYPLUS_IOT_SIMULATE_RATE


def runtime(ctx: AppContext) -> IotRuntime:
    """The module's runtime state, created on first use (start-up, or a request in tests)."""
    state = ctx.module_state.get("iot")
    if state is None:
        from cityplus.modules.iot.lease import holder_id

        settings = IotSettings()
        state = IotRuntime(ctx=ctx, settings=settings, metrics=IotMetrics.register(ctx.metrics),
                           holder=holder_id(), limiter=RateLimiter(settings.device_rate, settings.device_burst))
        ctx.module_state["iot"] = state
    return state  # type: ignore[no-any-return]


async def start(ctx: AppContext) -> None:
    rt = runtime(ctx)
    if rt.tasks:
        return
    from cityplus.modules.iot.health import loop

    rt.tasks.append(asyncio.create_task(loop(rt), name="cityplus-iot-health"))
    if ctx.settings.mqtt_url and rt.settings.mqtt:
        await _hold_gateway(rt)  # at once: a single process connects during start-up
        rt.tasks.append(asyncio.create_task(_gateway_lease_loop(rt), name="cityplus-iot-mqtt-lease"))
    if rt.settings.simulate_rate > 0 and rt.simulator is None:
        from cityplus.modules.iot.simulate import EmbeddedSimulator

        rt.simulator = EmbeddedSimulator(rt)
        rt.simulator.start()


async def _hold_gateway(rt: IotRuntime) -> None:
    """Run the MQTT gateway while this process holds the lease; stop it when the lease is lost."""
    from cityplus.modules.iot import lease
    from cityplus.modules.iot.mqtt import MqttGateway

    def take() -> bool:
        with rt.ctx.db.session() as session:
            return lease.acquire(session, lease.MQTT_GATEWAY, rt.holder, rt.settings.mqtt_lease_seconds)

    try:
        held = await asyncio.to_thread(take)
    except Exception as exc:  # database away: keep what runs, try again next round
        log.error("iot_lease_failed", exc_info=exc)
        return
    if held and rt.mqtt is None:
        rt.mqtt = MqttGateway(rt, rt.ctx.settings.mqtt_url)
        rt.mqtt.start()  # connects in the background: an absent broker delays nothing, paho keeps retrying
        log.info("iot_gateway_lease_taken", holder=rt.holder)
    elif not held and rt.mqtt is not None:
        gateway, rt.mqtt = rt.mqtt, None
        log.warning("iot_gateway_lease_lost", holder=rt.holder)
        await asyncio.to_thread(gateway.stop)


async def _gateway_lease_loop(rt: IotRuntime) -> None:
    while True:
        await asyncio.sleep(rt.settings.mqtt_lease_seconds / 3)
        await _hold_gateway(rt)


async def stop(ctx: AppContext) -> None:
    rt = ctx.module_state.get("iot")
    if rt is None:
        return
    if rt.simulator is not None:
        simulator, rt.simulator = rt.simulator, None
        await asyncio.to_thread(simulator.stop)
    for task in rt.tasks:
        task.cancel()
    await asyncio.gather(*rt.tasks, return_exceptions=True)
    rt.tasks.clear()
    if rt.mqtt is not None:
        gateway, rt.mqtt = rt.mqtt, None
        await asyncio.to_thread(gateway.stop)
        from cityplus.modules.iot import lease

        def give_up() -> None:
            with ctx.db.session() as session:
                lease.release(session, lease.MQTT_GATEWAY, rt.holder)

        try:
            await asyncio.to_thread(give_up)
        except Exception as exc:  # the lease then simply expires
            log.warning("iot_lease_release_failed", error=str(exc)[:200])
