"""Operations endpoints: liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import asyncio
import time
from typing import Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from cityplus.api.deps import PUBLIC_ROUTE, Ctx
from cityplus.core.context import AppContext

router = APIRouter(dependencies=[PUBLIC_ROUTE], tags=["operations"])


@router.get("/healthz", operation_id="healthz")
async def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


def _check_db(ctx: AppContext) -> None:
    with ctx.db.read_engine.connect() as conn:
        conn.execute(text("SELECT 1"))


def _check_mqtt(url: str, timeout: float = 2.0) -> None:
    import paho.mqtt.client as mqtt

    parts = urlsplit(url)
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"cityplus-readyz-{time.monotonic_ns()}")
    if parts.username:
        client.username_pw_set(parts.username, parts.password)
    if parts.scheme == "mqtts":
        client.tls_set()
    rc = client.connect(parts.hostname or "127.0.0.1", parts.port or 1883, keepalive=5)
    if rc != 0:
        raise ConnectionError(f"MQTT connect returned {rc}")
    # Wait for CONNACK so a port that accepts TCP but is no broker is not counted as ready.
    deadline = time.monotonic() + timeout
    while not client.is_connected() and time.monotonic() < deadline:
        client.loop(timeout=0.1)
    connected = client.is_connected()
    client.disconnect()
    if not connected:
        raise ConnectionError("no CONNACK from the MQTT broker")


async def _timed(name: str, fn: Any, *args: Any) -> tuple[str, dict[str, Any]]:
    start = time.perf_counter()
    try:
        await asyncio.wait_for(asyncio.to_thread(fn, *args), timeout=5)
        return name, {"status": "ok", "ms": round((time.perf_counter() - start) * 1000, 1)}
    except Exception as exc:  # readiness reports every failure as data, never raises
        return name, {"status": "error", "error": f"{type(exc).__name__}: {exc}"[:300]}


@router.get("/readyz", operation_id="readyz")
async def readyz(ctx: Ctx) -> JSONResponse:
    """Database, event bus and MQTT broker reachable as configured; 503 when any is not."""
    checks = [_timed("database", _check_db, ctx)]
    if ctx.settings.mqtt_url:
        checks.append(_timed("mqtt", _check_mqtt, ctx.settings.mqtt_url))
    results = dict(await asyncio.gather(*checks))
    bus_ok, bus_detail = ctx.bus.health()
    results["bus"] = {"status": "ok" if bus_ok else "error", "kind": bus_detail}
    ready = all(r["status"] == "ok" for r in results.values())
    return JSONResponse({"status": "ready" if ready else "not_ready", "checks": results},
                        status_code=200 if ready else 503)


@router.get("/metrics", operation_id="metrics", response_class=Response)
async def metrics(request: Request) -> Response:
    """Prometheus metrics of this process."""
    registry = request.app.state.metrics.registry
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
