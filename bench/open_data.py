"""Benchmark of the open-data module (issue 7 targets), on SQLite and PostgreSQL.

    python -m bench open_data [--backend sqlite|postgres|both] [--datasets 100000] [--rows 1000000]
                              [--requests 200] [--quick] [--no-doc]

(a) `package_search` through the CKAN API (in-process HTTP, httpx.ASGITransport) over --datasets datasets: Chinese
    queries (one word, two words, no match), with the default facets; p50/p95. The catalogue is bulk-inserted with
    the real jieba index terms (the titles come from a few hundred generated phrases).
(b) `datastore_search` with a filter on the primary key (indexed) of a --rows table; p50/p95.
(c) CSV download of that table (`downloads.stream`): MB/s and the growth of the process's peak RSS.
(d) Loading a CSV of --rows rows into the DataStore (`datastore.load`: encoding detection, type inference over every
    row, conversion, insert) beside `sqlite3 .import` of the same file into an empty table (the limit).
Not measured: Datasette side by side (not installed here) and the 10M-row table of the issue (see the results).

Prints a table and appends a dated section to docs/performance.md (`--no-doc` to skip).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import platform
import random
import resource
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "performance.md"
PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
PLACES = ["成都市", "锦江区", "青羊区", "金牛区", "武侯区", "成华区", "高新区", "天府新区", "双流区", "郫都区"]
TOPICS = ["空气质量监测", "公交线路站点", "停车场名录", "中小学校分布", "医疗机构名录", "社会保险参保统计",
          "地表水水质", "企业登记信息", "农产品价格", "旅游接待统计", "用电量统计", "公共文化场馆"]
KINDS = ["数据", "月报", "年报", "实时数据", "统计", "名录"]
QUERIES = ["空气质量", "公交", "停车场 锦江区", "社会保险", "不存在的词语"]
ORGS = ["hbj", "jiaow", "rsj", "wjw", "jyj", "fgw", "sww", "nw"]


def _pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _ctx(url: str, var: Path) -> Any:
    from cityplus.api.app import build_context
    from cityplus.core import migrate
    from cityplus.core.audit import Actor
    from cityplus.core.config import load_settings
    from cityplus.core.identity import service as identity

    settings = load_settings(database_url=url, var_dir=var, secret_key="bench-secret", bus_url="",
                             log_format="console")
    ctx = build_context(settings)
    migrate.upgrade(ctx.db, ctx.registry)
    with ctx.db.session() as s:
        identity.load_organisations(s, Actor.system("bench"))
    return ctx


def fill_catalogue(ctx: Any, n: int) -> float:
    """Insert n published datasets with their index terms and facets in bulk; returns seconds."""
    from sqlalchemy import insert

    from cityplus.core.db import utcnow
    from cityplus.modules.opendata.models import Dataset, FacetValue, SearchTerm
    from cityplus.modules.opendata.search import WEIGHTS, index_terms

    rng = random.Random(7)
    titles = [f"{p}{t}{k}" for p in PLACES for t in TOPICS for k in KINDS]
    terms = {t: index_terms(t) for t in titles}
    start = time.perf_counter()
    now = utcnow()
    batch = 5000
    for lo in range(0, n, batch):
        with ctx.db.session() as s:  # one transaction per batch
            ds_rows, term_rows, facet_rows = [], [], []
            for i in range(lo, min(n, lo + batch)):
                title = titles[rng.randrange(len(titles))]
                did = str(uuid.UUID(int=rng.getrandbits(128)))
                org = ORGS[i % len(ORGS)]
                ds_rows.append({"id": did, "name": f"bench-{i:07d}", "title_zh": title, "title_en": "",
                                "description_zh": "", "description_en": "", "org_code": org, "themes": ["area-11"],
                                "keywords": [], "licence": "CC-BY-4.0", "frequency": "MONTHLY", "spatial": "",
                                "contact_name": "", "contact_email": "", "opening": "open", "sharing": "share",
                                "grade": 1, "state": "published", "version": 1, "demo": True, "views": 0,
                                "downloads": rng.randrange(1000), "created_at": now, "modified_at": now,
                                "published_at": now})
                vis = {"org_code": org, "state": "published", "opening": "open", "sharing": "share"}
                term_rows += [{"term": t, "dataset_id": did, "weight": WEIGHTS["title"], **vis} for t in terms[title]]
                facet_rows += [{"facet": f, "value": v, "dataset_id": did, **vis}
                               for f, v in (("organization", org), ("theme", "area-11"), ("license_id", "CC-BY-4.0"),
                                            ("opening", "open"))]
            s.execute(insert(Dataset), ds_rows)
            s.execute(insert(SearchTerm), term_rows)
            s.execute(insert(FacetValue), facet_rows)
    _analyze(ctx)
    return time.perf_counter() - start


def _analyze(ctx: Any) -> None:
    from sqlalchemy import text

    with ctx.db.engine.connect() as c:
        c.execute(text("ANALYZE"))
        c.commit()


def fill_table(ctx: Any, rows: int) -> Any:
    """A DataStore table of `rows` rows (站点编号 primary key, date, numbers, text) on a published dataset."""
    from sqlalchemy import insert

    from cityplus.core.audit import Actor
    from cityplus.modules.opendata import datastore, service
    from cityplus.modules.opendata.schemas import DatasetFields, ResourceFields

    reader = service.Reader(actor=Actor("bench", org_code="hbj", role="department_staff"),
                            scopes=frozenset({service.PUBLISH}))
    with ctx.db.session() as s:
        ds = service.create_dataset(s, reader, DatasetFields(name="bench-table", title_zh="基准测试表",
                                                             org_code="hbj", opening="open", sharing="share"))
        res = service.add_resource(s, reader, ds, ResourceFields(name="t", kind="link",
                                                                 url="https://example.cn/t"))
        table = datastore.create(s, res, [{"id": "编号", "type": "int"}, {"id": "日期", "type": "date"},
                                          {"id": "AQI", "type": "int"}, {"id": "PM2.5", "type": "numeric"},
                                          {"id": "站点", "type": "text"}], primary_key=["编号"])
        service.publish_dataset(s, reader, ds)
        rid = res.id
        rng = random.Random(3)
        day0 = dt.date(2016, 1, 1)
        for lo in range(0, rows, 20_000):
            s.execute(insert(table), [{"c1": i, "c2": day0 + dt.timedelta(days=i % 700), "c3": rng.randrange(500),
                                       "c4": round(rng.uniform(0, 300), 1), "c5": PLACES[i % len(PLACES)]}
                                      for i in range(lo, min(rows, lo + 20_000))])
        res.row_count = rows
    _analyze(ctx)
    return rid


async def _timed_requests(ctx: Any, *batches: list[tuple[str, dict[str, Any]]]) -> list[list[float]]:
    """Milliseconds of each call of each batch, through one application instance."""
    import httpx

    from cityplus.api.app import create_app

    app = create_app(ctx=ctx)
    results: list[list[float]] = []
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            for calls in batches:
                out: list[float] = []
                for path, body in calls[:5]:  # warm-up
                    await client.post(path, json=body)
                for path, body in calls:
                    t = time.perf_counter()
                    r = await client.post(path, json=body)
                    out.append((time.perf_counter() - t) * 1000)
                    assert r.status_code == 200, r.text[:300]
                results.append(out)
    return results


def csv_download(ctx: Any, rid: str) -> tuple[float, float, float]:
    from cityplus.modules.opendata import downloads
    from cityplus.modules.opendata.models import Resource

    with ctx.db.read_sessionmaker() as s:
        res = s.get(Resource, rid)
        assert res is not None
        rss0 = _rss_mib()
        t = time.perf_counter()
        size = sum(len(chunk) for chunk in downloads.stream(ctx.db, res, "csv"))
        secs = time.perf_counter() - t
    return size / secs / 1e6, size / 1e6, _rss_mib() - rss0


def load_csv(ctx: Any, rows: int, work: Path) -> tuple[float, float | None]:
    """Rows/s of datastore.load and of sqlite3 .import for the same CSV file."""
    from cityplus.core.audit import Actor
    from cityplus.modules.opendata import datastore, service
    from cityplus.modules.opendata.models import Dataset, Resource

    path = work / "load.csv"
    rng = random.Random(5)
    with path.open("w", encoding="utf-8", newline="") as f:
        f.write("编号,日期,AQI,PM2.5,站点\n")
        for i in range(rows):
            d = dt.date(2016, 1, 1) + dt.timedelta(days=i % 700)
            f.write(f"{i},{d.year}年{d.month}月{d.day}日,{rng.randrange(500)},\"{rng.uniform(0, 3000):,.1f}\","
                    f"{PLACES[i % len(PLACES)]}\n")
    data = path.read_bytes()
    reader = service.Reader(actor=Actor("bench", org_code="hbj", role="department_staff"),
                            scopes=frozenset({service.PUBLISH}))
    with ctx.db.session() as s:
        ds = s.query(Dataset).filter_by(name="bench-table").one()
        res = Resource(id=str(uuid.uuid4()), dataset_id=ds.id, name="load", kind="file", format="CSV",
                       fields=[], primary_key=[], row_count=0, position=9)
        s.add(res)
        s.flush()
        t = time.perf_counter()
        datastore.load(s, res, "load.csv", data)
        s.flush()
        ours = rows / (time.perf_counter() - t)
        assert res.row_count == rows
        del reader
    sqlite3_cli = shutil.which("sqlite3")
    if sqlite3_cli is None:
        return ours, None
    db = work / "import.db"
    t = time.perf_counter()
    subprocess.run([sqlite3_cli, str(db)], input=f".mode csv\n.import {path} t\n", text=True, check=True,
                   capture_output=True)
    return ours, rows / (time.perf_counter() - t)


def run_backend(backend: str, args: argparse.Namespace) -> dict[str, Any]:
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    work = Path(tempfile.mkdtemp(prefix=f"bench-opendata-{backend}-"))
    name = f"bench_opendata_{uuid.uuid4().hex[:8]}"
    if backend == "sqlite":
        url = f"sqlite:///{work / 'bench.db'}"
    else:
        admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
        with admin.connect() as c:
            c.execute(text(f'CREATE DATABASE "{name}"'))
        url = make_url(PG_ADMIN).set(database=name).render_as_string(hide_password=False)
    out: dict[str, Any] = {"backend": backend}
    try:
        ctx = _ctx(url, work / "var")
        with ctx.db.engine.connect() as c:
            out["version"] = (c.execute(text("select sqlite_version()")).scalar() if backend == "sqlite"
                              else c.execute(text("show server_version")).scalar())
        out["fill_catalogue_s"] = fill_catalogue(ctx, args.datasets)
        searches = [("/api/3/action/package_search", {"q": QUERIES[i % len(QUERIES)], "rows": 10,
                                                      "facet.field": '["organization", "groups", "license_id"]'})
                    for i in range(args.requests)]
        rid = fill_table(ctx, args.rows)
        rng = random.Random(11)
        lookups = [("/api/3/action/datastore_search", {"resource_id": rid,
                                                       "filters": {"编号": rng.randrange(args.rows)}})
                   for _ in range(args.requests)]
        search_ms, ds_ms = asyncio.run(_timed_requests(ctx, searches, lookups))
        out["search_p50"], out["search_p95"] = _pct(search_ms, 50), _pct(search_ms, 95)
        out["ds_p50"], out["ds_p95"] = _pct(ds_ms, 50), _pct(ds_ms, 95)
        out["csv_mbs"], out["csv_mb"], out["csv_rss_mib"] = csv_download(ctx, rid)
        out["load_rows_s"], out["import_rows_s"] = load_csv(ctx, args.load_rows, work)
        ctx.db.dispose()
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if backend == "postgres":
            with admin.connect() as c:
                c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()
    return out


def report(results: list[dict[str, Any]], args: argparse.Namespace) -> str:
    lines = [f"## {dt.date.today().isoformat()} — open data (`bench/open_data.py`)", "",
             f"Machine: {platform.machine()}, {os.cpu_count()} cores shared with other work (noisy); Python "
             f"{platform.python_version()}. Command: `python -m bench open_data --datasets {args.datasets} "
             f"--rows {args.rows} --load-rows {args.load_rows} --requests {args.requests}`. One run per backend; "
             "latencies are medians/p95 over the requests of that run (in-process HTTP, no network).", ""]
    for r in results:
        imp = r["import_rows_s"]
        lines += [f"### {r['backend']} — {r['version']}", "",
                  "| measure | result | target |", "|---|---:|---|",
                  f"| (a) package_search over {args.datasets:,} datasets, p50 / p95 | {r['search_p50']:.1f} / "
                  f"{r['search_p95']:.1f} ms | p95 ≤ 50 ms |",
                  f"| (b) datastore_search, primary-key filter, {args.rows:,} rows, p50 / p95 | {r['ds_p50']:.1f} / "
                  f"{r['ds_p95']:.1f} ms | p95 ≤ 100 ms (10M rows) |",
                  f"| (c) CSV download ({r['csv_mb']:.0f} MB), throughput; peak-RSS growth | {r['csv_mbs']:.1f} MB/s;"
                  f" {r['csv_rss_mib']:.0f} MiB | ≥ 50 MB/s, flat memory |",
                  f"| (d) load {args.load_rows:,}-row CSV: DataStore rows/s"
                  + (" vs sqlite3 .import (ratio)" if imp else "") + f" | {r['load_rows_s']:,.0f}"
                  + (f" vs {imp:,.0f} ({r['load_rows_s'] / imp:.0%})" if imp else "") + " | beside sqlite3 |",
                  f"| bulk catalogue fill (setup, not a target) | {r['fill_catalogue_s']:.0f} s | |", ""]
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m bench open_data")
    p.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    p.add_argument("--datasets", type=int, default=100_000)
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--load-rows", type=int, default=200_000)
    p.add_argument("--requests", type=int, default=200)
    p.add_argument("--quick", action="store_true", help="small sizes, to check the script")
    p.add_argument("--no-doc", action="store_true")
    args = p.parse_args(argv)
    if args.quick:
        args.datasets, args.rows, args.load_rows, args.requests = 2000, 20_000, 5000, 30
    backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    results = [run_backend(b, args) for b in backends]
    text_ = report(results, args)
    print(text_)
    if not args.no_doc and not args.quick:
        with DOC.open("a", encoding="utf-8") as f:
            f.write("\n" + text_)
    return 0
