"""Runtime state of the device gateway (one per application): settings, metrics, the MQTT gateway, health checks."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import Counter

from cityplus.core.context import AppContext
from cityplus.modules.iot.settings import IotSettings


@dataclass
class IotMetrics:
    """Prometheus collectors of the gateway, registered on the application's registry."""

    measurements: Counter
    dead_letters: Counter
    duplicates: Counter

    @classmethod
    def register(cls, registry: Any) -> IotMetrics:
        return cls(
            measurements=Counter("cityplus_iot_measurements_total", "Device measurements applied to entities",
                                 ["transport"], registry=registry),
            dead_letters=Counter("cityplus_iot_dead_letters_total", "Device messages put in the dead-letter store",
                                 ["reason"], registry=registry),
            duplicates=Counter("cityplus_iot_duplicates_total", "Measurements skipped as already applied",
                               ["transport"], registry=registry),
        )


@dataclass
class IotRuntime:
    ctx: AppContext
    settings: IotSettings
    metrics: IotMetrics
    tasks: list[Any] = field(default_factory=list)
    mqtt: Any = None  # the MQTT gateway when connected (mqtt.MqttGateway)


def runtime(ctx: AppContext) -> IotRuntime:
    """The module's runtime state, created on first use (start-up, or a request in tests)."""
    state = ctx.module_state.get("iot")
    if state is None:
        state = IotRuntime(ctx=ctx, settings=IotSettings(), metrics=IotMetrics.register(ctx.metrics))
        ctx.module_state["iot"] = state
    return state  # type: ignore[no-any-return]


async def start(ctx: AppContext) -> None:
    rt = runtime(ctx)
    if not rt.tasks:
        from cityplus.modules.iot.health import loop

        rt.tasks.append(asyncio.create_task(loop(rt), name="cityplus-iot-health"))
    if ctx.settings.mqtt_url and rt.settings.mqtt and rt.mqtt is None:
        from cityplus.modules.iot.mqtt import MqttGateway

        rt.mqtt = MqttGateway(rt, ctx.settings.mqtt_url)
        rt.mqtt.start()  # connects in the background: an absent broker delays nothing, paho keeps retrying


async def stop(ctx: AppContext) -> None:
    rt = ctx.module_state.get("iot")
    if rt is None:
        return
    for task in rt.tasks:
        task.cancel()
    await asyncio.gather(*rt.tasks, return_exceptions=True)
    rt.tasks.clear()
    if rt.mqtt is not None:
        gateway, rt.mqtt = rt.mqtt, None
        await asyncio.to_thread(gateway.stop)
