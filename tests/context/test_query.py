"""NGSI-LD q / scopeQ: parser, exact evaluation and SQL narrowing (SQLite and PostgreSQL)."""

from __future__ import annotations

import os
import random
import re
import socket
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import JSON, Column, Engine, Integer, MetaData, Table, create_engine, insert, select, text
from sqlalchemy.engine import make_url

from cityplus.modules.context.query import (
    And,
    AttrPath,
    Comparison,
    Exists,
    Or,
    Pattern,
    QuerySyntaxError,
    Range,
    ScopeMatch,
    evaluate,
    evaluate_scope,
    parse_q,
    parse_scope_q,
)
from cityplus.modules.context.query_sql import attr_index_table, index_rows, to_sql
from cityplus.modules.context.regex import regex_search

NS = "https://uri.etsi.org/ngsi-ld/default-context/"
IN_CI = os.environ.get("CI") == "true"
PG_ADMIN_URL = os.environ.get("CITYPLUS_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


def expand(term: str) -> str:
    """Test @context: every term lives in the default context."""
    return NS + term


def q(text_: str) -> Any:
    """Parse with the test context."""
    return parse_q(text_, expand)


def path(attr: str, *sub: str, keys: tuple[str, ...] = ()) -> AttrPath:
    """Expanded AttrPath helper (metadata names stay short)."""
    meta = {"observedAt", "createdAt", "modifiedAt", "unitCode", "datasetId"}
    return AttrPath(NS + attr, tuple(s if s in meta else NS + s for s in sub), keys)


# ------------------------------------------------------------------------------------------------ parser


@pytest.mark.parametrize(("query", "expected"), [
    ("temperature>20", Comparison(path("temperature"), ">", 20)),
    ("temperature<=20.5", Comparison(path("temperature"), "<=", 20.5)),
    ("temperature==-1e3", Comparison(path("temperature"), "==", -1000.0)),
    ('name=="Park"', Comparison(path("name"), "==", "Park")),
    ('district=="武侯区"', Comparison(path("district"), "==", "武侯区")),
    (r'name=="say \"hi\" \\ ok"', Comparison(path("name"), "==", 'say "hi" \\ ok')),
    ("status==true", Comparison(path("status"), "==", True)),
    ("owner==urn:ngsi-ld:Person:1", Comparison(path("owner"), "==", "urn:ngsi-ld:Person:1")),
    ('a==1,2,"x"', Comparison(path("a"), "==", (1, 2, "x"))),
    ("a!=1..5", Comparison(path("a"), "!=", Range(1, 5))),
    ("a==2020-01-01T00:00:00Z..2020-02-01T00:00:00+08:00",
     Comparison(path("a"), "==", Range(datetime(2020, 1, 1, tzinfo=UTC), datetime(2020, 1, 31, 16, tzinfo=UTC)))),
    ("t.observedAt>=2020-01-01T00:00:00Z", Comparison(path("t", "observedAt"), ">=", datetime(2020, 1, 1, tzinfo=UTC))),
    ('t.sensor.unitCode=="CEL"', Comparison(path("t", "sensor", "unitCode"), "==", "CEL")),
    ('address[city]=="Chengdu"', Comparison(path("address", keys=("city",)), "==", "Chengdu")),
    ("a.b[k1][k2].k3==1", Comparison(path("a", "b", keys=("k1", "k2", "k3")), "==", 1)),
    ('label[en]=="x"', Comparison(path("label", keys=("en",)), "==", "x")),
    ("temperature", Exists(path("temperature"))),
    ("!temperature", Exists(path("temperature"), negated=True)),
    ("name~=(?i)park", Pattern(path("name"), "(?i)park")),
    ('name!~="^a;b"', Pattern(path("name"), "^a;b", negated=True)),
    ("(name~=(a|b)c)", Pattern(path("name"), "(a|b)c")),
    ("a;b|c", Or((And((Exists(path("a")), Exists(path("b")))), Exists(path("c"))))),
    ("a|b;c", Or((Exists(path("a")), And((Exists(path("b")), Exists(path("c"))))))),
    ("(a|b);c", And((Or((Exists(path("a")), Exists(path("b")))), Exists(path("c"))))),
    ("a;(b;c)", And((Exists(path("a")), Exists(path("b")), Exists(path("c"))))),
    (" a == 1 ; b ", And((Comparison(path("a"), "==", 1), Exists(path("b"))))),
    ("n~=[(]x;b==1", And((Pattern(path("n"), "[(]x"), Comparison(path("b"), "==", 1)))),
    ("n~=[)|;]x|b", Or((Pattern(path("n"), "[)|;]x"), Exists(path("b"))))),
    (r"n~=a[\]]b;c", And((Pattern(path("n"), r"a[\]]b"), Exists(path("c"))))),
    ("(n~=(?i)a(b|c)|d)", Or((Pattern(path("n"), "(?i)a(b|c)"), Exists(path("d"))))),
])
def test_parse_valid(query: str, expected: Any) -> None:
    assert q(query) == expected


@pytest.mark.parametrize(("query", "message"), [
    ("", "empty query"),
    ("a==", "expected a value, found end of input at position 3"),
    ("a>true", "'>' needs a number"),
    ("a<urn:x:1", "'<' needs a number"),
    ("a>1,2", "value lists are only allowed"),
    ("a>=1..2", "ranges are only allowed"),
    ('a==1.."z"', "same type"),
    ("((a)", "expected ')'"),
    ("a)", "expected ';', '|' or end of input, found ')' at position 1"),
    ("a==foo", "found 'foo' at position 3"),
    ("!a==1", "non-existence"),
    ("a..b", "expected a name after '.'"),
    ("a;", "expected an attribute name, found end of input at position 2"),
    ("a[k==1", "expected ']'"),
    ("a[]==1", "key inside"),
    ('a=="x', "unterminated string"),
    ("a==2020-13-45", "invalid date/time"),
    ("a.observedAt.x==1", "metadata names end"),
    ("a~=", "expected a regular expression"),
    ("a~=[", "invalid or unsupported regular expression"),
    (r"a~=(a)\1", "not supported"),
    ("a~=x(?=y)", "not supported"),
    ("a~=(?<!x)y", "not supported"),
    ("a~=(?>a+)b", "not supported"),
    ("a~=a*+b", "not supported"),
    ("a~=(?(1)a|b)", "regular expression"),
    ("a~=(x{100}){100}", "too large"),
    ("a~=" + "x" * 300, "longer than 256"),
])
def test_parse_invalid(query: str, message: str) -> None:
    with pytest.raises(QuerySyntaxError) as info:
        q(query)
    assert message in str(info.value)
    assert "position" in str(info.value)


@pytest.mark.parametrize("query", [
    "(" * 5000 + "a" + ")" * 5000,
    "(" * 51 + "a" + ")" * 51,
    "a;" * 2100 + "a",
    "a==" + '"' + "x" * 5000 + '"',
    "!" * 3000,
    "a" + "[k]" * 3000,
])
def test_hostile_input_is_a_syntax_error(query: str) -> None:
    with pytest.raises(QuerySyntaxError):
        q(query)


def test_nesting_at_limit_is_accepted() -> None:
    assert q("(" * 50 + "a" + ")" * 50) == Exists(path("a"))


def test_long_flat_query_within_limit() -> None:
    node = q(";".join(["name", "!x"] * 500))
    assert isinstance(node, And) and len(node.children) == 1000
    assert evaluate(node, ENTITY)


def test_error_carries_position() -> None:
    with pytest.raises(QuerySyntaxError) as info:
        q("temperature>20;name=")
    assert info.value.position == 19
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("regex", [r"(a+)+$", r"(a|aa)*b", r"a*a*b", r".*.*.*x", r"(\w+\s?)+$", r"^(a+b)c$"])
def test_catastrophic_regex_runs_in_linear_time(regex: str) -> None:
    node = q(f'name~="{regex}"')
    entity = {NS + "name": prop("a" * 30_000 + "!")}
    start = time.perf_counter()
    assert evaluate(node, entity) is False
    assert time.perf_counter() - start < 2
    assert evaluate(node, {NS + "name": prop("aab")}) is (re.search(regex, "aab") is not None)


REGEXES = [r"(a+)+$", r"(a|aa)*b", r"^ab?c{2,3}$", r"(?i)PARK", r"\bno\b", r"[^a-c]+x", r"^$", r"a$", r"(?m)^b",
           r"x|y|zz", r"\d+\.\d*", r"\W\s", r"(?s)a.b", r"a.b", r"colou?r", r"[\u4e00-\u9fff]+", r"(?i:ab)C",
           r"a{0,3}b{2}", r".*", r"(?a)\w", r"\B", r"\Aa", r"b\Z", r"(?:)|x", r"[\d\s]{2}", r"a*?b+?"]


@pytest.mark.parametrize("regex", REGEXES)
def test_regex_search_agrees_with_re(regex: str) -> None:
    rnd = random.Random(regex)
    alphabet = "abcxyzno\n ._9ABC武侯"
    for _ in range(300):
        subject = "".join(rnd.choice(alphabet) for _ in range(rnd.randint(0, 8)))
        assert regex_search(regex, subject) is (re.search(regex, subject) is not None), subject


# ------------------------------------------------------------------------------------------------ evaluation


def prop(value: Any, **extra: Any) -> dict[str, Any]:
    """A Property instance."""
    return {"type": "Property", "value": value, **extra}


ENTITY: dict[str, Any] = {
    "id": "urn:ngsi-ld:Park:1",
    "type": NS + "Park",
    "scope": ["/Chengdu/Wuhou/Park1", "/Beijing"],
    NS + "temperature": [
        prop(21.5, observedAt="2020-06-01T10:00:00Z", unitCode="CEL", datasetId="urn:ds:a",
             **{NS + "sensor": {"type": "Relationship", "object": "urn:ngsi-ld:Sensor:9",
                                "observedAt": "2020-06-01T09:00:00Z"},
                NS + "accuracy": prop(0.5)}),
        prop(30, observedAt="2021-06-01T10:00:00+08:00", datasetId="urn:ds:b"),
    ],
    NS + "textTemp": prop("25"),
    NS + "name": prop("Parque Norte"),
    NS + "district": prop("武侯区"),
    NS + "status": prop(True),
    NS + "tags": prop(["green", "quiet", 7]),
    NS + "address": prop({"city": "Chengdu", "street": {"name": "Renmin Rd", "no": 12},
                          "rooms": [{"n": 1}, {"n": 2}]}),
    NS + "owner": {"type": "Relationship", "object": "urn:ngsi-ld:Person:1"},
    NS + "label": {"type": "LanguageProperty", "languageMap": {"en": "North Park", "zh": "北公园"}},
    NS + "category": {"type": "VocabProperty", "vocab": NS + "public"},
    NS + "readings": {"type": "ListProperty", "valueList": [1, 2, 3]},
    NS + "friends": {"type": "ListRelationship", "objectList": [{"object": "urn:a"}, {"object": "urn:b"}]},
    NS + "meta": {"type": "JsonProperty", "json": {"k": [1, {"deep": "yes"}]}},
    NS + "openedAt": prop({"@type": "DateTime", "@value": "2019-03-01T08:00:00Z"}),
    NS + "openDate": prop("2019-03-01"),
    NS + "openTime": prop("08:30:00"),
    NS + "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [104.06, 30.6]}},
    NS + "nothing": prop(None),
}


@pytest.mark.parametrize(("query", "expected"), [
    ("temperature>25", True),  # multi-attribute: any instance
    ("temperature>30", False),
    ("temperature==21.5", True),
    ("temperature==30.0", True),  # int and float compare numerically
    ('temperature=="21.5"', False),  # type-aware: string literal vs number
    ("textTemp==25", False),  # number literal vs string value
    ('textTemp=="25"', True),
    ("textTemp>2", False),
    ('textTemp>"2"', True),  # strings order lexicographically
    ("temperature==1,21.5", True),
    ("temperature==1,2", False),
    ("temperature==21.5..22", True),
    ("temperature==30..30", True),  # inclusive
    ("temperature==31..40", False),
    ("temperature!=21.5", True),  # the other instance differs
    ("status!=true", False),
    ("missing!=1", False),  # != needs the attribute
    ("missing==1", False),
    ("!missing", True),
    ("!temperature", False),
    ("missing", False),
    ("nothing", True),
    ("nothing==1", False),
    ("status==true", True),
    ("status==false", False),
    ('district=="武侯区"', True),
    ('name=="Parque Norte"', True),
    ('tags=="quiet"', True),  # array value: any element
    ("tags==7", True),
    ('tags!="quiet"', False),  # the array contains it
    ("owner==urn:ngsi-ld:Person:1", True),  # Relationship compares object
    ('owner=="urn:ngsi-ld:Person:1"', True),
    ("owner==urn:ngsi-ld:Person:2", False),
    ("friends==urn:b", True),
    ("readings>2", True),
    ("readings>3", False),
    ('label=="北公园"', True),
    ('label[en]=="North Park"', True),
    ('label[zh]=="North Park"', False),
    ('label[fr]=="North Park"', False),
    ('category=="' + NS + 'public"', True),
    ('meta[k][deep]=="yes"', True),
    ("meta[k]==1", True),
    ('address[city]=="Chengdu"', True),
    ('address[city]=="Beijing"', False),
    ("address[street][no]>=12", True),
    ('address[street].name=="Renmin Rd"', True),
    ("address[rooms][n]==2", True),
    ("address[zip]", False),
    ("address[city]", True),
    ("!address[zip]", True),
    ('address=="Chengdu"', False),  # compound values never equal scalars
    ("location==1", False),
    ("location", True),
    ("temperature.observedAt>=2021-01-01T00:00:00Z", True),
    ("temperature.observedAt>2021-06-01T02:00:00Z", False),  # +08:00 normalised to UTC
    ("temperature.observedAt==2021-06-01T02:00:00Z", True),
    ('temperature.unitCode=="CEL"', True),
    ('temperature.datasetId=="urn:ds:b"', True),
    ("temperature.createdAt", False),
    ("temperature.sensor==urn:ngsi-ld:Sensor:9", True),
    ("temperature.sensor.observedAt<2020-06-01T09:30:00Z", True),
    ("temperature.accuracy<1", True),
    ("temperature.accuracy", True),
    ("temperature.missing", False),
    ("!temperature.missing", True),
    ("openedAt>2019-01-01T00:00:00Z", True),  # typed @value literal compares as dateTime
    ("openedAt>2019-03-01T08:00:00Z", False),
    ('openedAt=="2019-03-01T08:00:00Z"', True),
    ("openDate==2019-03-01", True),
    ("openDate<2019-03-02", True),
    ("openDate>2019-03-01T00:00:00Z", False),  # a date is not a dateTime
    ("openTime>=08:00:00", True),
    ("openTime<08:00:00Z", False),
    ("name~=(?i)^parque", True),
    ('name~="Norte$"', True),
    ("name~=^Norte", False),
    ("name!~=^Norte", True),
    ("name!~=Norte", False),
    ("label~=公园", True),
    ("temperature~=21", False),  # patterns match strings only
    ("missing!~=x", False),
    ("temperature>25;status==true", True),
    ("temperature>25;status==false", False),
    ("temperature>99;status==false|name", True),  # (a;b)|c
    ("temperature>99;(status==false|name)", False),
    ("(temperature>99|status==true);!missing", True),
])
def test_evaluate(query: str, expected: bool) -> None:
    assert evaluate(q(query), ENTITY) is expected


def test_evaluate_expanded_type_and_object_forms() -> None:
    entity = {
        NS + "rel": {"type": "https://uri.etsi.org/ngsi-ld/Relationship", "object": [{"@id": "urn:x"}, "urn:y"]},
        NS + "lang": {"type": "LanguageProperty", "languageMap": [{"@value": "Hallo", "@language": "de"}]},
        NS + "list": {"type": "ListProperty", "valueList": {"@list": [5, 6]}},
        "notAnAttribute": {"value": 1},
    }
    assert evaluate(q("rel==urn:x"), entity) and evaluate(q("rel==urn:y"), entity)
    assert evaluate(q('lang[de]=="Hallo"'), entity)
    assert evaluate(q("list==6"), entity)
    assert not evaluate(q("notAnAttribute"), {"notAnAttribute": {"value": 1}})


# ------------------------------------------------------------------------------------------------ scopeQ


@pytest.mark.parametrize(("query", "scopes", "expected"), [
    ("/Madrid/Gardens/ParqueNorte", ["/Madrid/Gardens/ParqueNorte"], True),
    ("/Madrid/Gardens", ["/Madrid/Gardens/ParqueNorte"], False),
    ("/Madrid/#", ["/Madrid"], True),
    ("/Madrid/#", ["/Madrid/Gardens/ParqueNorte"], True),
    ("/Madrid/#", ["/Madridista"], False),
    ("/#", ["/anything/at/all"], True),
    ("/#", [], False),
    ("/Madrid/+/ParqueNorte", ["/Madrid/Gardens/ParqueNorte"], True),
    ("/Madrid/+", ["/Madrid/Gardens/ParqueNorte"], False),
    ("/Madrid/+/#", ["/Madrid/Gardens/ParqueNorte"], True),
    ("/Madrid;/Paris", ["/Madrid", "/Paris"], True),
    ("/Madrid;/Paris", ["/Madrid"], False),
    ("/Rome|/Madrid;/Paris", ["/Rome"], True),
    ("(/Rome|/Madrid);/Paris", ["/Rome"], False),
    ("/成都/武侯", ["/成都/武侯"], True),
])
def test_scope(query: str, scopes: list[str], expected: bool) -> None:
    assert evaluate_scope(parse_scope_q(query), scopes) is expected


@pytest.mark.parametrize("query", ["", "Madrid", "/Madrid/", "/Madrid#", "/a;", "(/a", "/a/#/b", "(" * 60 + "/a"])
def test_scope_invalid(query: str) -> None:
    with pytest.raises(QuerySyntaxError):
        parse_scope_q(query)


def test_scope_in_entity_evaluation() -> None:
    assert parse_scope_q("/Chengdu/#") == ScopeMatch(("Chengdu",), True)
    assert evaluate(parse_scope_q("/Chengdu/+/Park1"), ENTITY)
    assert not evaluate(parse_scope_q("/Madrid"), ENTITY)


# ------------------------------------------------------------------------------------------------ SQL narrowing


def generate_entities(n: int = 50) -> list[dict[str, Any]]:
    """Deterministic pseudo-random expanded entities covering the attribute kinds."""
    rnd = random.Random(2026)
    base = datetime(2020, 1, 1, tzinfo=UTC)
    long_prefix = "L" * 520
    entities = []
    for i in range(n):
        e: dict[str, Any] = {"id": f"urn:ngsi-ld:Thing:{i}", "type": NS + "Thing"}
        if i % 7:
            temps = [prop(rnd.choice([rnd.randint(-10, 40), rnd.random() * 40]),
                          observedAt=(base + timedelta(days=rnd.randint(0, 900))).isoformat())]
            if i % 5 == 0:
                temps.append(prop(rnd.randint(-10, 40), datasetId=f"urn:ds:{i}"))
            e[NS + "temperature"] = temps if len(temps) > 1 else temps[0]
        elif i % 2:
            e[NS + "temperature"] = prop(str(rnd.randint(0, 40)))  # a string temperature
        e[NS + "name"] = prop(rnd.choice(["Alpha", "beta", "Gamma", "武侯区", "zeta", "Éclair"]) + str(i % 3))
        if i % 4 == 0:
            e[NS + "name"] = prop(long_prefix + ("a" if i % 8 else "b"))
        e[NS + "status"] = prop(i % 3 == 0)
        e[NS + "owner"] = {"type": "Relationship", "object": f"urn:ngsi-ld:Person:{i % 4}"}
        if i % 2:
            e[NS + "tags"] = prop(rnd.sample(["green", "quiet", "busy", "dark"], k=2))
        e[NS + "address"] = prop({"city": rnd.choice(["Chengdu", "Beijing"])})
        e[NS + "measuredAt"] = prop((base + timedelta(hours=rnd.randint(0, 20000))).isoformat().replace("+00:00", "Z"))
        e[NS + "count"] = prop(2**60 + i if i % 10 == 0 else i)
        if i % 3 == 0:
            e[NS + "label"] = {"type": "LanguageProperty", "languageMap": {"en": f"park {i}", "zh": "公园"}}
        if i % 6 == 0:
            e[NS + "friends"] = {"type": "ListRelationship", "objectList": [{"object": f"urn:f:{i % 5}"}]}
        entities.append(e)
    return entities


# (query, SQL narrowing must be exact)
SQL_QUERIES: list[tuple[str, bool]] = [
    ("temperature>20", True),
    ("temperature>=20.5", True),
    ("temperature<0", True),
    ("temperature==10", True),
    ("temperature==4,6,40", True),
    ("temperature==10..20", True),
    ('temperature=="27"', True),
    ("temperature==27", True),
    ("temperature!=10", False),
    ("temperature", True),
    ("!temperature", True),
    ("!tags", True),
    ('name=="Alpha1"', True),
    ('name=="武侯区0"', True),
    ('name>"beta"', True),
    ('name<"Gamma"', True),
    ('name>="' + "L" * 520 + 'a"', False),
    ('name=="' + "L" * 520 + 'b"', False),
    ('name=="' + "L" * 520 + '"', False),
    ('name=="Éclair1","zeta2"', True),
    ("name~=^[A-Z]", False),
    ("name!~=a", False),
    ("status==true", True),
    ("status==false", True),
    ("status!=true", False),
    ("owner==urn:ngsi-ld:Person:2", True),
    ('owner=="urn:ngsi-ld:Person:3"', True),
    ('tags=="green"', True),
    ('tags=="green","dark"', True),
    ('address[city]=="Chengdu"', False),
    ("measuredAt>2021-01-01T00:00:00Z", False),
    ("measuredAt<=2020-06-01T00:00:00+08:00", False),
    ('measuredAt>"2021"', True),
    ("temperature.observedAt>=2021-01-01T00:00:00Z", False),
    ("count>1000", True),
    ("count>=1152921504606846976", False),
    ("count==1152921504606846996", False),
    ('label=="公园"', True),
    ('label[en]=="park 3"', False),
    ("friends==urn:f:1", True),
    ("temperature>20;status==true", True),
    ("temperature>20|status==true", True),
    ("(temperature>30|name~=a);!tags", False),
    ("temperature>20;name~=a", False),
    ("missing==1|temperature<0", True),
    ("temperature.observedAt|owner==urn:ngsi-ld:Person:1", False),
]


def _pg_reachable() -> bool:
    url = make_url(PG_ADMIN_URL)
    try:
        with socket.create_connection((url.host or "127.0.0.1", url.port or 5432), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)], scope="module")
def engine(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    if request.param == "sqlite":
        eng = create_engine(f"sqlite:///{tmp_path_factory.mktemp('q') / 'q.db'}")
        yield eng
        eng.dispose()
        return
    if not _pg_reachable():
        if IN_CI:
            pytest.fail(f"PostgreSQL at {make_url(PG_ADMIN_URL).host} is required in CI")
        pytest.skip("PostgreSQL not reachable")
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"cityplus_q_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}" ENCODING \'UTF8\' TEMPLATE template0'))
    eng = create_engine(make_url(PG_ADMIN_URL).set(database=name))
    try:
        yield eng
    finally:
        eng.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="module")
def loaded(engine: Engine) -> tuple[Engine, Table, Table, dict[int, dict[str, Any]]]:
    md = MetaData()
    entities_table = Table("test_entities", md, Column("pk", Integer, primary_key=True), Column("doc", JSON))
    index = attr_index_table(md)
    md.create_all(engine)
    docs = {pk: e for pk, e in enumerate(generate_entities(), start=1)}
    with engine.begin() as conn:
        conn.execute(insert(entities_table), [{"pk": pk, "doc": e} for pk, e in docs.items()])
        conn.execute(insert(index), [row for pk, e in docs.items() for row in index_rows(pk, e)])
    return engine, entities_table, index, docs


@pytest.mark.parametrize(("query", "exact"), SQL_QUERIES)
def test_sql_narrowing(loaded: tuple[Engine, Table, Table, dict[int, dict[str, Any]]], query: str,
                       exact: bool) -> None:
    engine, entities_table, index, docs = loaded
    node = q(query)
    truth = {pk for pk, e in docs.items() if evaluate(node, e)}
    cond = to_sql(node, entities_table.c.pk, index)
    stmt = select(entities_table.c.pk)
    if cond is not None:
        stmt = stmt.where(cond)
    with engine.connect() as conn:
        candidates = set(conn.execute(stmt).scalars())
    assert candidates >= truth, f"SQL dropped matching entities {sorted(truth - candidates)}"
    if exact:
        assert candidates == truth, f"SQL kept non-matching entities {sorted(candidates - truth)}"
    assert len(truth) < len(docs) or query.startswith("!")  # the data set makes queries selective


def random_comparisons(seed: int, n: int = 25) -> list[str]:
    """Random simple comparisons (numbers, strings, booleans, relationships, lists, ranges) over generated data."""
    rnd = random.Random(seed)
    out = []
    for _ in range(n):
        op = rnd.choice(["==", ">", ">=", "<", "<="])
        kind = rnd.choice(["num", "num", "str", "bool", "rel", "list", "range"])
        if kind == "num":
            number = rnd.choice([rnd.randint(-5, 45), rnd.random() * 40])
            out.append(f"{rnd.choice(['temperature', 'count'])}{op}{number}")
        elif kind == "str":
            word = rnd.choice(["Alpha1", "beta0", "Gamma", "武侯区2", "z", "É", "L" * 511, "green", "a"])
            out.append(f'{rnd.choice(["name", "tags", "label", "temperature"])}{op}"{word}"')
        elif kind == "bool":
            out.append(f"status=={rnd.choice(['true', 'false'])}")
        elif kind == "rel":
            out.append(f"owner{op}urn:ngsi-ld:Person:{rnd.randint(0, 4)}" if op == "==" else f'owner{op}"urn:n"')
        elif kind == "list":
            out.append(f"temperature=={rnd.randint(0, 40)},{rnd.randint(0, 40)},\"{rnd.randint(0, 40)}\"")
        else:
            low = rnd.randint(-10, 40)
            out.append(f"temperature=={low}..{low + rnd.randint(0, 10)}")
    return out


@pytest.mark.parametrize("seed", range(4))
def test_sql_random_simple_comparisons_are_exact(loaded: tuple[Engine, Table, Table, dict[int, dict[str, Any]]],
                                                 seed: int) -> None:
    engine, entities_table, index, docs = loaded
    with engine.connect() as conn:
        for query in random_comparisons(seed):
            node = q(query)
            truth = {pk for pk, e in docs.items() if evaluate(node, e)}
            cond = to_sql(node, entities_table.c.pk, index)
            assert cond is not None, query
            got = set(conn.execute(select(entities_table.c.pk).where(cond)).scalars())
            assert got == truth, (query, sorted(got ^ truth))


def test_sql_queries_are_not_trivial() -> None:
    docs = generate_entities()
    hits = [sum(evaluate(q(query), e) for e in docs) for query, _ in SQL_QUERIES]
    assert sum(1 for h in hits if h) >= 30


def test_to_sql_cannot_narrow() -> None:
    md = MetaData()
    entities_table = Table("e", md, Column("pk", Integer, primary_key=True))
    index = attr_index_table(md)
    assert to_sql(q("!temperature.observedAt"), entities_table.c.pk, index) is None
    assert to_sql(q("!a|b"), entities_table.c.pk, index) is not None
    assert to_sql(q("!a.b|b"), entities_table.c.pk, index) is None
    assert to_sql(parse_scope_q("/a"), entities_table.c.pk, index) is None


def test_to_sql_patterns_and_metadata() -> None:
    md = MetaData()
    entities_table = Table("e", md, Column("pk", Integer, primary_key=True))
    index = attr_index_table(md)
    for query in ["t.observedAt~=x", "t.observedAt!~=x", "t.observedAt>2020-01-01T00:00:00Z", 'n=="a\x00b"',
                  "t.observedAt!=2020-01-01T00:00:00Z", "t==2020-01-01", "t==1,2020-01-01"]:
        assert to_sql(q(query), entities_table.c.pk, index) is not None


def test_deeply_nested_values_do_not_recurse() -> None:
    value: Any = "deep"
    for _ in range(5000):
        value = [value]
    entity = {NS + "n": prop(value)}
    assert evaluate(q('n=="deep"'), entity)
    assert [r["text"] for r in index_rows(1, entity)] == ["deep"]


def test_index_rows_shape() -> None:
    rows = index_rows(7, ENTITY)
    temps = [r for r in rows if r["attr"] == NS + "temperature"]
    assert {r["dataset_id"] for r in temps} == {"urn:ds:a", "urn:ds:b"}
    assert {r["num"] for r in temps} == {21.5, 30.0}
    assert all(r["ts"] is not None for r in temps)  # observedAt
    assert [r["obj"] for r in rows if r["attr"] == NS + "owner"] == ["urn:ngsi-ld:Person:1"]
    assert sorted(r["text"] for r in rows if r["attr"] == NS + "tags" if r["text"]) == ["green", "quiet"]
    assert [r for r in rows if r["attr"] == NS + "address"][0]["text"] is None  # compound: existence only
    assert {r["attr"] for r in rows} == {k for k in ENTITY if k.startswith(NS)}
    long = index_rows(1, {NS + "n": prop("x" * 2000)})
    assert len(long[0]["text"]) == 512
