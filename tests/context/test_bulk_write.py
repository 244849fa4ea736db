"""Set-based writes (store.py): batch semantics, incremental index maintenance, and the fallback on a conflict.

The index invariant: after any sequence of writes, each entity's attribute-index, geo-index and type rows are
exactly what a full rebuild from its stored attributes would produce.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select, text

from cityplus.modules.context import query as qmod
from cityplus.modules.context import query_sql, service, store
from cityplus.modules.context.errors import AlreadyExists
from cityplus.modules.context.models import ContextEntity, ContextEntityType, attr_index, geo_index

NS = "https://example.org/ns/"
LOC = "https://uri.etsi.org/ngsi-ld/location"
T_AQ = NS + "AirQualityObserved"


def entity(n: int, *, pm25: float = 10.0, district: str = "武侯区", extra: dict[str, Any] | None = None
           ) -> dict[str, Any]:
    return {"id": f"urn:ngsi-ld:AQ:{n}", "type": [T_AQ],
            NS + "pm25": {"type": "Property", "value": pm25, "observedAt": "2026-11-24T08:00:00Z"},
            NS + "district": {"type": "Property", "value": district},
            LOC: {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [104.0 + n / 100, 30.6]}},
            **(extra or {})}


def _norm(row: dict[str, Any]) -> tuple[Any, ...]:
    def value(v: Any) -> str:
        if isinstance(v, datetime) and v.tzinfo is not None:  # SQLite hands back naive UTC
            v = v.astimezone(UTC).replace(tzinfo=None)
        return str(v)

    return tuple(sorted((k, value(v)) for k, v in row.items() if k != "id"))


def assert_index_consistent(session: Any) -> None:
    """Every entity's index rows equal a rebuild from its stored attributes (and no orphans exist)."""
    ents = session.execute(select(ContextEntity.pk, ContextEntity.types, ContextEntity.attrs,
                                  ContextEntity.tenant_id)).all()
    want_attr: Counter[tuple[Any, ...]] = Counter()
    want_geo: Counter[tuple[Any, ...]] = Counter()
    want_types: Counter[tuple[Any, ...]] = Counter()
    for pk, types, attrs, tenant_id in ents:
        want_attr.update(_norm(r) for r in query_sql.index_rows(pk, attrs))
        want_geo.update(_norm(r) for r in store._geo_rows(pk, attrs))
        want_types.update((pk, t, tenant_id) for t in types)
    got_attr = Counter(_norm(dict(r._mapping)) for r in session.execute(select(attr_index)))
    geo_cols = [c for c in geo_index.c if c.name != "id"]
    got_geo = Counter(_norm(dict(r._mapping)) for r in session.execute(select(*geo_cols)))
    got_types = Counter(tuple(r) for r in session.execute(
        select(ContextEntityType.entity_pk, ContextEntityType.type, ContextEntityType.tenant_id)))
    assert got_attr == want_attr
    assert got_geo == want_geo
    assert got_types == want_types


def test_upsert_same_id_twice_in_one_batch_acts_in_order(ctx) -> None:  # type: ignore[no-untyped-def]
    with ctx.db.session() as s:
        res = service.batch_write(s, None, "upsert_update", [
            entity(1, pm25=5), entity(1, pm25=7, extra={NS + "no2": {"type": "Property", "value": 3}})])
        assert res.success == ["urn:ngsi-ld:AQ:1", "urn:ngsi-ld:AQ:1"] and res.created == ["urn:ngsi-ld:AQ:1"]
    with ctx.db.session() as s:
        ent = service.get_entity(s, None, "urn:ngsi-ld:AQ:1")
        assert ent.attrs[NS + "pm25"]["value"] == 7 and ent.attrs[NS + "no2"]["value"] == 3
        assert_index_consistent(s)


def test_create_duplicate_in_batch_fails_alone(ctx) -> None:  # type: ignore[no-untyped-def]
    with ctx.db.session() as s:
        service.create_entity(s, None, entity(1))
    with ctx.db.session() as s:
        res = service.batch_write(s, None, "create", [entity(1), entity(2), entity(2), entity(3)])
        assert res.success == ["urn:ngsi-ld:AQ:2", "urn:ngsi-ld:AQ:3"]
        assert [(eid, type(e)) for eid, e in res.errors] == [("urn:ngsi-ld:AQ:1", AlreadyExists),
                                                             ("urn:ngsi-ld:AQ:2", AlreadyExists)]
    with ctx.db.session() as s:
        assert s.scalar(text("SELECT count(*) FROM context_entities")) == 3
        assert_index_consistent(s)


def test_delete_and_recreate_in_batches(ctx) -> None:  # type: ignore[no-untyped-def]
    with ctx.db.session() as s:
        service.batch_write(s, None, "create", [entity(n) for n in range(5)])
        res = service.batch_write(s, None, "delete", ["urn:ngsi-ld:AQ:1", "urn:ngsi-ld:AQ:1", "urn:ngsi-ld:AQ:9"])
        assert res.success == ["urn:ngsi-ld:AQ:1"] and [e for e, _ in res.errors] == ["urn:ngsi-ld:AQ:1",
                                                                                     "urn:ngsi-ld:AQ:9"]
        res = service.batch_write(s, None, "upsert", [entity(1, pm25=99)])
        assert res.created == ["urn:ngsi-ld:AQ:1"]
        assert_index_consistent(s)


def test_random_operations_keep_the_index_exact(ctx) -> None:  # type: ignore[no-untyped-def]
    """Random batches, single-attribute patches, replaces and deletes against a full rebuild of the index."""
    rnd = random.Random(4)
    districts = ["武侯区", "锦江区", "青羊区"]
    for step in range(25):
        with ctx.db.session() as s:
            op = rnd.choice(["upsert", "upsert_update", "update", "merge", "delete", "patch", "attr", "drop"])
            ids = [rnd.randrange(12) for _ in range(rnd.randrange(1, 6))]
            extra = {NS + "noise": {"type": "Property", "value": rnd.random()}} if rnd.random() < 0.5 else None
            if op == "delete":
                service.batch_write(s, None, op, [f"urn:ngsi-ld:AQ:{n}" for n in ids])
            elif op in ("patch", "attr", "drop"):
                try:
                    eid = f"urn:ngsi-ld:AQ:{ids[0]}"
                    if op == "patch":
                        service.update_attrs(s, None, eid, {NS + "pm25": {"type": "Property", "value": step}})
                    elif op == "attr":
                        service.update_attr(s, None, eid, LOC, {"type": "GeoProperty", "value": {
                            "type": "Point", "coordinates": [103.0 + step / 10, 30.0]}}, replace=True)
                    else:
                        service.delete_attr(s, None, eid, NS + "district")
                except Exception as exc:  # noqa: BLE001 - ResourceNotFound for absent entities/attributes
                    assert type(exc).__name__ == "ResourceNotFound"
            else:
                service.batch_write(s, None, op, [
                    entity(n, pm25=rnd.uniform(0, 200), district=rnd.choice(districts), extra=extra) for n in ids])
        with ctx.db.session() as s:
            assert_index_consistent(s)


async def test_patch_is_visible_to_q_and_geo_queries(client, ctx, make_user, token_for) -> None:  # type: ignore[no-untyped-def]
    h = {**token_for(make_user("department_staff", org="hbj")), "Content-Type": "application/json"}
    batch = [{"id": f"urn:ngsi-ld:AQ:{n}", "type": "AirQualityObserved",
              "pm25": {"type": "Property", "value": 10 * n},
              "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [104.0, 30.0 + n]}}}
             for n in range(1, 4)]
    r = await client.post("/ngsi-ld/v1/entityOperations/upsert", headers=h, content=json.dumps(batch))
    assert r.status_code == 201 and sorted(r.json()) == sorted(e["id"] for e in batch)
    r = await client.patch("/ngsi-ld/v1/entities/urn:ngsi-ld:AQ:1/attrs", headers=h,
                           content=json.dumps({"pm25": {"type": "Property", "value": 500}}))
    assert r.status_code == 204, r.text
    r = await client.put("/ngsi-ld/v1/entities/urn:ngsi-ld:AQ:2/attrs/location", headers=h, content=json.dumps(
        {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [110.0, 20.0]}}))
    assert r.status_code == 204, r.text

    async def ids(**params: str) -> list[str]:
        r = await client.get("/ngsi-ld/v1/entities", params={"type": "AirQualityObserved", **params}, headers=h)
        assert r.status_code == 200, r.text
        return sorted(e["id"] for e in r.json())

    assert await ids(q="pm25>100") == ["urn:ngsi-ld:AQ:1"]
    assert await ids(q="pm25==10") == []
    assert await ids(q="pm25<40") == ["urn:ngsi-ld:AQ:2", "urn:ngsi-ld:AQ:3"]
    near = {"georel": "near;maxDistance==1000", "geometry": "Point", "coordinates": "[110.0,20.0]"}
    assert await ids(**near) == ["urn:ngsi-ld:AQ:2"]
    near["coordinates"] = "[104.0,32.0]"
    assert await ids(**near) == []
    with ctx.db.session() as s:
        assert_index_consistent(s)


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)  # SQLite serialises writers: nothing interleaves
def test_concurrent_creator_falls_back_to_one_by_one(ctx) -> None:  # type: ignore[no-untyped-def]
    """A set-based batch that collides with a concurrent insert of one id still writes every other entity."""
    with ctx.db.session() as s:
        service.create_entity(s, None, entity(0))  # creates the default tenant
    other = ctx.db.engine.connect()
    tx = other.begin()
    tenant_id = other.execute(text("SELECT id FROM context_tenants WHERE name = ''")).scalar_one()
    other.execute(text("INSERT INTO context_entities (tenant_id, entity_id, types, attrs, created_at, modified_at) "
                       "VALUES (:t, 'urn:ngsi-ld:AQ:2', '[]', '{}', now(), now())"), {"t": tenant_id})

    def commit_later() -> None:
        time.sleep(0.5)
        tx.commit()

    threading.Thread(target=commit_later).start()
    try:
        with ctx.db.session() as s:  # its INSERT waits on the uncommitted row, then hits the unique constraint
            res = service.batch_write(s, None, "create", [entity(1), entity(2), entity(3)])
    finally:
        other.close()
    assert res.success == ["urn:ngsi-ld:AQ:1", "urn:ngsi-ld:AQ:3"]
    assert [(eid, type(e)) for eid, e in res.errors] == [("urn:ngsi-ld:AQ:2", AlreadyExists)]
    with ctx.db.session() as s:
        assert s.scalar(text("SELECT count(*) FROM context_entities")) == 4
        assert store.load(s, tenant_id, ["urn:ngsi-ld:AQ:1"])["urn:ngsi-ld:AQ:1"].attrs[NS + "pm25"]["value"] == 10


async def test_empty_batch_and_null_items_are_refused_whole(client, make_user, token_for) -> None:  # type: ignore[no-untyped-def]
    h = {**token_for(make_user("department_staff", org="hbj")), "Content-Type": "application/json"}
    for op in ("create", "upsert", "update", "merge", "delete"):
        r = await client.post(f"/ngsi-ld/v1/entityOperations/{op}", headers=h, content="[]")
        assert r.status_code == 400 and "empty" in r.json()["detail"], (op, r.text)
    good = {"id": "urn:ngsi-ld:AQ:1", "type": "AirQualityObserved", "pm25": {"type": "Property", "value": 1}}
    r = await client.post("/ngsi-ld/v1/entityOperations/create", headers=h, content=json.dumps([good, None]))
    assert r.status_code == 400 and "position(s) 1" in r.json()["detail"], r.text
    r = await client.get("/ngsi-ld/v1/entities/urn:ngsi-ld:AQ:1", headers=h)
    assert r.status_code == 404  # nothing of the refused batch was written


async def test_language_property_null_deletes_it(client, make_user, token_for) -> None:  # type: ignore[no-untyped-def]
    h = {**token_for(make_user("department_staff", org="hbj")), "Content-Type": "application/json"}
    ent = {"id": "urn:ngsi-ld:Street:1", "type": "Street",
           "street": {"type": "LanguageProperty", "languageMap": {"zh": "人民南路", "en": "Renmin Road S."}},
           "lanes": {"type": "Property", "value": 6}}
    assert (await client.post("/ngsi-ld/v1/entities", headers=h, content=json.dumps(ent))).status_code == 201
    r = await client.patch("/ngsi-ld/v1/entities/urn:ngsi-ld:Street:1/attrs", headers=h, content=json.dumps(
        {"street": {"type": "LanguageProperty", "languageMap": {"@none": "urn:ngsi-ld:null"}}}))
    assert r.status_code == 204, r.text
    doc = (await client.get("/ngsi-ld/v1/entities/urn:ngsi-ld:Street:1", headers=h)).json()
    assert "street" not in doc and doc["lanes"]["value"] == 6


def test_large_batches_take_the_bulk_paths(ctx) -> None:  # type: ignore[no-untyped-def]
    """Batches above store.COPY_MIN_ROWS (COPY on PostgreSQL, pks from the sequence) store exactly what small ones
    do: same index rows, same query answers, and later single writes keep working on those rows."""
    n = store.COPY_MIN_ROWS * 3
    with ctx.db.session() as s:
        res = service.batch_write(s, None, "upsert", [entity(i, pm25=float(i), district="锦江区" if i % 3 else "武侯区")
                                                      for i in range(n)])
        assert res.created == [f"urn:ngsi-ld:AQ:{i}" for i in range(n)]
    with ctx.db.session() as s:
        assert_index_consistent(s)
        node = qmod.parse_q('pm25>=100;district=="武侯区"', lambda name: NS + name)
        page, total = service.query_entities(s, None, service.EntityQuery(q=node, limit=1000, count=True))
        assert total == len([i for i in range(100, n) if i % 3 == 0]) == len(page)
        service.update_attrs(s, None, "urn:ngsi-ld:AQ:0", {NS + "pm25": {"type": "Property", "value": 500}})
        service.create_entity(s, None, entity(n + 1))  # the sequence moved past the COPYed pks
    with ctx.db.session() as s:
        assert_index_consistent(s)


async def test_nan_and_infinity_are_not_json(client, make_user, token_for) -> None:  # type: ignore[no-untyped-def]
    h = {**token_for(make_user("department_staff", org="hbj")), "Content-Type": "application/json"}
    for number in ("NaN", "Infinity", "-Infinity"):
        body = '{"id": "urn:ngsi-ld:AQ:1", "type": "AirQualityObserved", "pm25": {"type": "Property", "value": %s}}'
        r = await client.post("/ngsi-ld/v1/entities", headers=h, content=body % number)
        assert r.status_code == 400, r.text
        assert r.json()["type"].endswith("InvalidRequest") and number in r.json()["detail"]
