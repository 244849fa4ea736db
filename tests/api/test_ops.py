"""Operations: health, readiness, metrics, request ids, body limit, OpenAPI."""

from __future__ import annotations

import os

import pytest

from tests.conftest import need


async def test_healthz_and_request_id(client) -> None:  # type: ignore[no-untyped-def]
    r = await client.get("/healthz", headers={"X-Request-ID": "abc-123"})
    assert r.status_code == 200 and r.json() == {"status": "ok"}
    assert r.headers["x-request-id"] == "abc-123"
    r = await client.get("/healthz", headers={"X-Request-ID": "bad id with spaces"})
    assert r.headers["x-request-id"] != "bad id with spaces" and len(r.headers["x-request-id"]) == 32


async def test_readyz_reports_each_dependency(client) -> None:  # type: ignore[no-untyped-def]
    r = await client.get("/readyz")
    body = r.json()
    assert r.status_code == 200, body
    assert body["checks"]["database"]["status"] == "ok"
    assert body["checks"]["bus"]["status"] == "ok"


async def test_readyz_fails_when_mqtt_unreachable(ctx) -> None:  # type: ignore[no-untyped-def]
    import httpx

    from cityplus.api.app import create_app

    ctx.settings.mqtt_url = "mqtt://127.0.0.1:9"  # discard port: nothing listens
    app = create_app(ctx=ctx)
    async with app.router.lifespan_context(app), httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://t"
    ) as c:
        r = await c.get("/readyz")
    assert r.status_code == 503
    assert r.json()["checks"]["mqtt"]["status"] == "error"


async def test_readyz_checks_real_mqtt_broker(ctx) -> None:  # type: ignore[no-untyped-def]
    import socket

    import httpx

    from cityplus.api.app import create_app

    url = os.environ.get("CITYPLUS_TEST_MQTT_URL", "mqtt://127.0.0.1:1883")
    try:
        socket.create_connection(("127.0.0.1", 1883), timeout=1).close()
        up = True
    except OSError:
        up = False
    need(up, "no MQTT broker on 127.0.0.1:1883")
    ctx.settings.mqtt_url = url
    app = create_app(ctx=ctx)
    async with app.router.lifespan_context(app), httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://t"
    ) as c:
        r = await c.get("/readyz")
    assert r.status_code == 200, r.json()
    assert r.json()["checks"]["mqtt"]["status"] == "ok"


async def test_metrics_are_prometheus_text(client) -> None:  # type: ignore[no-untyped-def]
    await client.get("/api/v1/orgs")
    await client.get("/no/such/path")
    r = await client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    text = r.text
    assert 'cityplus_http_requests_total{method="GET",route="/api/v1/orgs",status="200"}' in text
    assert 'route="unmatched"' in text and "/no/such/path" not in text


async def test_body_over_limit_is_413_without_write(client, make_user, token_for, ctx) -> None:  # type: ignore[no-untyped-def]
    h = token_for(make_user("platform_admin"))
    big = b'{"username": "' + b"a" * (ctx.settings.max_body_bytes + 10) + b'"}'
    r = await client.post("/api/v1/users", headers={**h, "content-type": "application/json"}, content=big)
    assert r.status_code == 413
    assert r.json()["title"] == "Payload too large"


async def test_streamed_body_over_limit_is_413(client, make_user, token_for, ctx) -> None:  # type: ignore[no-untyped-def]
    h = token_for(make_user("platform_admin"))
    limit = ctx.settings.max_body_bytes

    async def chunks():  # type: ignore[no-untyped-def]
        for _ in range(limit // 65536 + 2):
            yield b"x" * 65536

    r = await client.post("/api/v1/users", headers={**h, "content-type": "application/json"}, content=chunks())
    assert r.status_code == 413


async def test_openapi_has_stable_operation_ids(client) -> None:  # type: ignore[no-untyped-def]
    spec = (await client.get("/openapi.json")).json()
    ops = {op["operationId"] for path in spec["paths"].values() for op in path.values()}
    for expected in ("get_me", "create_my_token", "list_users", "list_orgs", "list_audit_entries",
                     "list_plan_tasks", "get_plan_task", "get_plan_coverage", "healthz", "readyz"):
        assert expected in ops
    assert (await client.get("/docs")).status_code == 200


@pytest.mark.parametrize("path", ["/api/v1/plan/tasks/0", "/api/v1/plan/tasks/47", "/api/v1/plan/tasks/x"])
async def test_bad_path_params_are_422(client, path: str) -> None:  # type: ignore[no-untyped-def]
    r = await client.get(path)
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "path.number"
