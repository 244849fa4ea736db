"""The demo catalogue loads on both databases, covers all 12 plan areas and is labelled as demo data."""

from __future__ import annotations

from tests.opendata.factories import ok


async def test_demo_catalogue(app, client, ctx) -> None:  # type: ignore[no-untyped-def]
    from cityplus.modules.opendata import demo

    with ctx.db.session() as session:
        demo.load(session, ctx)
    with ctx.db.session() as session:
        demo.load(session, ctx)  # idempotent
    res = await ok(client, "package_search", rows=0, **{"facet.field": '["groups", "organization"]',
                                                         "facet.limit": -1})
    assert 90 <= res["count"] <= 120  # 不予开放 ones are not public
    assert {f"area-{n}" for n in range(1, 13)} <= set(res["facets"]["groups"])
    assert len(res["facets"]["organization"]) >= 50
    air = await ok(client, "package_show", id="air-quality-hourly")
    assert air["demo"] is True and air["notes"].startswith("【演示数据】")
    table = next(r for r in air["resources"] if r["datastore_active"])
    rows = await ok(client, "datastore_search", resource_id=table["id"], limit=1)
    assert rows["total"] == 90 and {"AQI", "经度", "纬度", "日期"} <= {f["id"] for f in rows["fields"]}
    assert (await ok(client, "package_search", q="公交"))["results"][0]["name"] == "bus-stops"
