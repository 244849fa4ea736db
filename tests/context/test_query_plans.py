"""Query plans (query_sql.plan): the SQL-only path must give exactly what query.evaluate gives.

When plan() says a q query is exact, service.query_entities counts and pages in SQL without looking at the
documents. These tests compare that with evaluating every stored entity in Python, on random data and queries.
"""

from __future__ import annotations

import random
from typing import Any

from sqlalchemy import MetaData

from cityplus.modules.context import query as qmod
from cityplus.modules.context import query_sql, service

NS = "https://example.org/ns/"
T = NS + "Sensor"
WORDS = ["武侯区", "锦江区", "a", "b", "urn:ngsi-ld:X:1", "2026-11-24T08:00:00Z", ""]


def _value(rnd: random.Random) -> Any:
    kind = rnd.randrange(6)
    if kind == 0:
        return rnd.choice([0, 1, 2, 2.5, -3, 75, 76, 10**20])
    if kind == 1:
        return rnd.choice(WORDS)
    if kind == 2:
        return rnd.choice([True, False])
    if kind == 3:
        return [rnd.choice([1, 2, 75, "a"]) for _ in range(rnd.randrange(3))]
    if kind == 4:
        return {"k": rnd.choice([1, "a"])}
    return rnd.uniform(0, 150)


def _attr(rnd: random.Random) -> Any:
    kind = rnd.randrange(5)
    if kind == 0:
        return {"type": "Relationship", "object": rnd.choice(["urn:ngsi-ld:X:1", "a"])}
    if kind == 1:
        return {"type": "LanguageProperty", "languageMap": {"zh": rnd.choice(WORDS), "en": "b"}}
    if kind == 2:  # multi-attribute
        return [{"type": "Property", "value": _value(rnd)},
                {"type": "Property", "value": _value(rnd), "datasetId": "urn:ngsi-ld:ds:2"}]
    return {"type": "Property", "value": _value(rnd), "observedAt": "2026-11-24T08:00:00Z"}


def _entity(n: int, rnd: random.Random) -> dict[str, Any]:
    ent: dict[str, Any] = {"id": f"urn:ngsi-ld:Sensor:{n}", "type": [T]}
    for name in ("p", "q", "r"):
        if rnd.random() < 0.8:
            ent[NS + name] = _attr(rnd)
    return ent


def _term(rnd: random.Random) -> str:
    name = rnd.choice(["p", "q", "r", "missing"])
    kind = rnd.randrange(8)
    if kind == 0:
        return name
    if kind == 1:
        return "!" + name
    lit = rnd.choice(["75", "2", "2.5", "-3", '"武侯区"', '"a"', '"urn:ngsi-ld:X:1"', "true", "false",
                      "100000000000000000000", '"2026-11-24T08:00:00Z"', '""'])
    if kind == 2:
        other = rnd.choice(["1", "2", "75", '"a"'])
        return f"{name}=={lit},{other}"  # value list
    op = rnd.choice(["==", "==", ">", "<", ">=", "<=", "!="])
    return f"{name}{op}{lit}"


def test_exact_plans_agree_with_evaluate(ctx) -> None:  # type: ignore[no-untyped-def]
    rnd = random.Random(2026)
    entities = [_entity(n, rnd) for n in range(120)]
    with ctx.db.session() as s:
        res = service.batch_write(s, None, "create", entities)
        assert not res.errors
    expand = lambda name: NS + name  # noqa: E731
    exact_seen = 0
    for _ in range(150):
        text = ";".join(_term(rnd) for _ in range(rnd.randrange(1, 4)))
        try:
            node = qmod.parse_q(text, expand)
        except qmod.QuerySyntaxError:  # e.g. p<true: refused by the grammar, nothing to compare
            continue
        _, exact = query_sql.plan(node, query_sql.attr_index_table(MetaData()).c.entity_pk,
                                  query_sql.attr_index_table(MetaData()))
        exact_seen += exact
        want = sorted(e["id"] for e in entities if qmod.evaluate(node, e))
        limit = rnd.choice([1, 5, 1000])
        with ctx.db.session(readonly=True) as s:
            page, total = service.query_entities(s, None, service.EntityQuery(
                types=service.TypeExpr(((T,),)), q=node, limit=limit, count=True))
            assert total == len(want), text
            assert [e.entity_id for e in page] == sorted(want, key=lambda i: int(i.rsplit(":", 1)[1]))[:limit], text
    assert exact_seen > 40  # the SQL-only path was really exercised


def test_drivers_and_checks_in_one_query(ctx) -> None:  # type: ignore[no-untyped-def]
    """An equality drives, a range is checked per entity; paging with offset crosses the page boundary."""
    rnd = random.Random(7)
    rows = [{"id": f"urn:ngsi-ld:Sensor:{n}", "type": [T],
             NS + "district": {"type": "Property", "value": rnd.choice(["武侯区", "锦江区"])},
             NS + "pm25": {"type": "Property", "value": rnd.uniform(0, 150)}} for n in range(300)]
    with ctx.db.session() as s:
        service.batch_write(s, None, "create", rows)
    node = qmod.parse_q('pm25>75;district=="武侯区"', lambda n: NS + n)
    want = [r["id"] for r in rows if qmod.evaluate(node, r)]
    got: list[str] = []
    with ctx.db.session(readonly=True) as s:
        for offset in range(0, len(want) + 7, 7):
            page, total = service.query_entities(s, None, service.EntityQuery(
                types=service.TypeExpr(((T,),)), q=node, limit=7, offset=offset, count=True))
            assert total == len(want)
            got += [e.entity_id for e in page]
    assert got == want
