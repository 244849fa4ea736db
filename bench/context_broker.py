"""Benchmark of the NGSI-LD context broker (issue targets a–e), on SQLite and PostgreSQL.

    python -m bench context_broker [--backend sqlite|postgres|both] [--n 100000] [--reps 3] [--quick]

(a) batch upsert (`POST /ngsi-ld/v1/entityOperations/upsert`, 1,000 entities per request) through the HTTP API
    in-process (httpx.ASGITransport), the same through `service.upsert_entity` (one transaction per batch, one
    savepoint per entity, as the API does), and the same rows written with the driver's raw `executemany` into
    tables with exactly our schema (copied from the migrated database) — the limit. Each repetition writes into a
    fresh database; the three writers of one repetition run side by side.
(c) `GET /entities?type=AirQualityObserved&q=pm25>75;district=="武侯区"` and (d) `georel=near;maxDistance==2000`
    around (104.0657, 30.6595): p50/p95 over --requests requests, with the N entities of the last HTTP upsert.
(b) (PostgreSQL) `cityplus serve --workers 2` under `wrk`: single-attribute `PATCH /entities/{id}/attrs` against
    `GET /healthz`, same generator, --duration seconds each, alternating, --reps pairs.
(e) RSS with 1M entities stored is not measured here (see docs/performance.md).

Prints a table and appends a dated section to docs/performance.md (`--no-doc` to skip). No timed assertions: the
targets are reported as met or not, nothing fails on them.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import random
import re
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "performance.md"
PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
PG_BASE = "postgresql+psycopg://postgres@127.0.0.1:5432/"
DISTRICTS = ["锦江区", "青羊区", "金牛区", "武侯区", "成华区", "龙泉驿区", "青白江区", "新都区", "温江区", "双流区",
             "郫都区"]
CENTER = (104.06, 30.66)
NEAR = (104.0657, 30.6595)
ID_FMT = "urn:ngsi-ld:AirQualityObserved:bench-{:07d}"
TABLES = ["context_tenants", "context_entities", "context_entity_types", "context_attr_index", "context_geo_index"]
JSON_CT = {"Content-Type": "application/json"}
Q_PARAMS = {"type": "AirQualityObserved", "q": 'pm25>75;district=="武侯区"'}
GEO_PARAMS = {"type": "AirQualityObserved", "georel": "near;maxDistance==2000", "geometry": "Point",
              "coordinates": json.dumps(list(NEAR))}
TARGETS = {"upsert": 0.25, "q_p95_ms": 20.0, "geo_p95_ms": 20.0, "patch_ratio": 0.50}


# --------------------------------------------------------------------------------------------------- data


def entity(i: int, rng: random.Random) -> dict[str, Any]:
    """An AirQualityObserved-like entity: 8 numeric readings, district, location around Chengdu."""
    obs = "2026-11-24T08:00:00Z"

    def num(v: float, unit: str) -> dict[str, Any]:
        return {"type": "Property", "value": round(v, 1), "unitCode": unit, "observedAt": obs}

    return {
        "id": ID_FMT.format(i),
        "type": "AirQualityObserved",
        "pm25": num(rng.uniform(0, 150), "GQ"),
        "pm10": num(rng.uniform(0, 250), "GQ"),
        "no2": num(rng.uniform(0, 120), "GQ"),
        "o3": num(rng.uniform(0, 200), "GQ"),
        "so2": num(rng.uniform(0, 30), "GQ"),
        "co": num(rng.uniform(0, 3), "GP"),
        "temperature": num(rng.uniform(-2, 35), "CEL"),
        "relativeHumidity": num(rng.uniform(0.3, 1.0), "C62"),
        "district": {"type": "Property", "value": rng.choice(DISTRICTS)},
        "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [
            round(CENTER[0] + rng.uniform(-0.25, 0.25), 6), round(CENTER[1] + rng.uniform(-0.2, 0.2), 6)]}},
    }


def make_entities(n: int, seed: int = 20261124) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    return [entity(i, rng) for i in range(n)]


def batches(items: list[Any], size: int) -> list[list[Any]]:
    return [items[i:i + size] for i in range(0, len(items), size)]


# --------------------------------------------------------------------------------------------------- setup


def _quiet_logging() -> None:
    import logging

    from cityplus.core.logging import configure_logging

    configure_logging("json", logging.WARNING)


class Backend:
    """Scratch databases of one backend: a migrated template, then one fresh copy per run."""

    def __init__(self, kind: str, workdir: Path) -> None:
        self.kind, self.workdir = kind, workdir
        self.prefix = f"cpbench_{os.getpid()}"
        self.made: list[str] = []
        self.template = self._template()

    def version(self) -> str:
        if self.kind == "sqlite":
            return f"SQLite {sqlite3.sqlite_version}"
        import psycopg

        with psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=postgres") as conn:
            return "PostgreSQL " + str(conn.execute("show server_version").fetchone()[0]).split()[0]

    def _admin(self, sql: str) -> None:
        import psycopg

        with psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=postgres", autocommit=True) as conn:
            conn.execute(sql)

    def _template(self) -> str:
        from cityplus.core import migrate
        from cityplus.core.db import Database
        from cityplus.core.modules import ModuleRegistry

        url = self._create("tmpl", template=None)
        db = Database(url)
        try:
            migrate.upgrade(db, ModuleRegistry.discover())
        finally:
            db.dispose()
        return url

    def _create(self, name: str, template: str | None) -> str:
        if self.kind == "sqlite":
            path = self.workdir / f"{name}.db"
            if template is not None:
                shutil.copyfile(template.removeprefix("sqlite:///"), path)
            return f"sqlite:///{path}"
        dbname = f"{self.prefix}_{name}"
        self._admin(f'DROP DATABASE IF EXISTS "{dbname}"')
        self._admin(f'CREATE DATABASE "{dbname}"' + (f' TEMPLATE "{self.prefix}_tmpl"' if template else ""))
        self.made.append(dbname)
        return PG_BASE + dbname

    def fresh(self, name: str) -> str:
        return self._create(name, self.template)

    def drop(self, url: str) -> None:
        if self.kind == "sqlite":
            for suffix in ("", "-wal", "-shm"):
                Path(url.removeprefix("sqlite:///") + suffix).unlink(missing_ok=True)
            return
        dbname = url.rsplit("/", 1)[1]
        self._admin(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
        if dbname in self.made:
            self.made.remove(dbname)

    def analyze(self, url: str) -> None:
        """VACUUM ANALYZE a PostgreSQL database after a bulk load: what a default autovacuum does a little later on
        its own (planner statistics, and the visibility map that index-only scans need). These machines run
        PostgreSQL with autovacuum off."""
        import psycopg

        dbname = url.rsplit("/", 1)[1]
        with psycopg.connect(f"host=127.0.0.1 port=5432 user=postgres dbname={dbname}", autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE")

    def size(self, url: str) -> int:
        """Bytes the database takes on disk."""
        if self.kind == "sqlite":
            return sum(Path(url.removeprefix("sqlite:///") + x).stat().st_size for x in ("", "-wal")
                       if Path(url.removeprefix("sqlite:///") + x).exists())
        import psycopg

        with psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=postgres") as conn:
            return int(conn.execute("SELECT pg_database_size(%s)", (url.rsplit("/", 1)[1],)).fetchone()[0])

    def cleanup(self) -> None:
        if self.kind == "postgres":
            for dbname in list(self.made):
                self._admin(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')


def settings_for(url: str, workdir: Path) -> Any:
    from cityplus.core.config import Settings

    return Settings(database_url=url, var_dir=workdir, secret_key="bench-secret-key-" + "x" * 40, log_format="json")


@contextmanager
def _env(**values: str) -> Iterator[None]:
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


class App:
    """The CityPlus ASGI app on one database, driven in-process through httpx.ASGITransport."""

    def __init__(self, url: str, workdir: Path) -> None:
        self.url, self.workdir = url, workdir

    async def __aenter__(self) -> Any:
        import httpx

        from cityplus.api.app import build_context, create_app
        from cityplus.modules.context.settings import get_context_settings

        self._env = _env(CITYPLUS_CONTEXT_AUTH="none")
        self._env.__enter__()
        get_context_settings.cache_clear()
        self.ctx = build_context(settings_for(self.url, self.workdir))
        self.app = create_app(ctx=self.ctx)
        self._life = self.app.router.lifespan_context(self.app)
        await self._life.__aenter__()
        self.client = httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url="http://bench",
                                        timeout=600)
        return self.client

    async def __aexit__(self, *exc: Any) -> None:
        from cityplus.modules.context.settings import get_context_settings

        await self.client.aclose()
        await self._life.__aexit__(*exc)
        self.ctx.db.dispose()
        self._env.__exit__(None, None, None)
        get_context_settings.cache_clear()


# --------------------------------------------------------------------------------------------------- (a) upsert


def upsert_http(url: str, workdir: Path, bodies: list[bytes], n: int) -> float:
    """Entities/s of batch upserts through the HTTP API (bodies pre-serialized)."""

    async def run() -> float:
        async with App(url, workdir) as client:
            t0 = time.perf_counter()
            for body in bodies:
                r = await client.post("/ngsi-ld/v1/entityOperations/upsert", content=body, headers=JSON_CT)
                if r.status_code not in (201, 204):
                    raise RuntimeError(f"upsert failed: {r.status_code} {r.text[:500]}")
            return n / (time.perf_counter() - t0)

    return asyncio.run(run())


def expanded(entities: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The entities as the API layer hands them to the service (normalized, expanded with the core context)."""
    from cityplus.modules.context import jsonld
    from cityplus.modules.context.normalize import normalize_entity

    active = jsonld.ContextResolver(allow_remote=False).core()
    out = []
    for raw in entities:
        e = jsonld.expand_entity(normalize_entity(raw), active)
        e["type"] = e["type"] if isinstance(e["type"], list) else [e["type"]]
        out.append(e)
    return out


def upsert_service(url: str, groups: list[list[dict[str, Any]]], n: int) -> float:
    """Entities/s of service.batch_write("upsert"), one transaction per batch (as the API)."""
    from cityplus.core.db import Database
    from cityplus.modules.context import service

    db = Database(url)
    try:
        t0 = time.perf_counter()
        for group in groups:
            with db.session() as session:
                res = service.batch_write(session, None, "upsert", group)
                if res.errors:
                    raise RuntimeError(f"service upsert failed: {res.errors[:3]}")
        return n / (time.perf_counter() - t0)
    finally:
        db.dispose()


@dataclass
class RawRows:
    """Pre-built parameter rows, per batch, for the raw executemany writer (same rows as the broker writes)."""

    entities: list[list[dict[str, Any]]] = field(default_factory=list)
    types: list[list[dict[str, Any]]] = field(default_factory=list)
    values: list[list[dict[str, Any]]] = field(default_factory=list)
    geo: list[list[dict[str, Any]]] = field(default_factory=list)


def raw_rows(groups: list[list[dict[str, Any]]], kind: str) -> RawRows:
    """Rows for raw_*: the entity (JSON doc), its type, its attr-index rows and geo row — built outside timing."""
    from cityplus.modules.context import geo as geomod
    from cityplus.modules.context import query_sql, service

    now = dt.datetime.now(dt.UTC)
    stamp = now.isoformat(timespec="milliseconds").replace("+00:00", "Z")

    def ts(v: Any) -> Any:
        if isinstance(v, dt.datetime) and kind == "sqlite":
            return v.astimezone(dt.UTC).replace(tzinfo=None).isoformat(" ")
        return v

    out, pk = RawRows(), 0
    for group in groups:
        ents, types, values, geos = [], [], [], []
        for e in group:
            pk += 1
            attrs = {k: {**v, "createdAt": stamp, "modifiedAt": stamp} for k, v in e.items()
                     if k not in ("id", "type", "scope")}
            ents.append({"pk": pk, "tenant_id": 1, "entity_id": e["id"], "types": json.dumps(e["type"]),
                         "scopes": None, "attrs": json.dumps(attrs), "created_at": ts(now), "modified_at": ts(now)})
            types.extend({"entity_pk": pk, "type": t, "tenant_id": 1} for t in e["type"])
            for row in query_sql.index_rows(pk, attrs):
                row = {**row, "ts": ts(row["ts"])}
                if kind == "sqlite" and row["bool"] is not None:
                    row["bool"] = int(row["bool"])
                values.append(row)
            for name, attr in attrs.items():
                for inst in service.instances(attr):
                    if inst.get("type") == "GeoProperty":
                        g = geomod.index_row(pk, name, inst.get("datasetId"), inst["value"])
                        g["geojson"] = json.dumps(g["geojson"])
                        geos.append(g)
        out.entities.append(ents)
        out.types.append(types)
        out.values.append(values)
        out.geo.append(geos)
    return out


def _sqlite_raw_schema(conn: sqlite3.Connection) -> None:
    """Copy our tables, indexes, rtree and triggers as raw_* (identical schema)."""
    rows = conn.execute("SELECT type, name, sql FROM sqlite_master WHERE sql IS NOT NULL AND name LIKE 'context_%' "
                        "ORDER BY CASE type WHEN 'table' THEN 0 WHEN 'index' THEN 1 ELSE 2 END").fetchall()
    for kind, name, sql in rows:
        if kind == "table" and re.search(r"_(node|rowid|parent)$", name):
            continue  # rtree shadow tables: created by the virtual table
        if name.startswith("context_jsonld"):
            continue
        conn.execute(re.sub(r"\bcontext_", "raw_", sql))
    conn.execute("INSERT INTO raw_tenants (id, name, created_at) VALUES (1, '', '2026-11-24 00:00:00')")
    conn.commit()


def _pg_raw_schema(conn: Any) -> None:
    """Copy our tables as raw_*: columns, defaults, indexes (LIKE … INCLUDING ALL), then the foreign keys, which
    LIKE does not copy (each type and geo-index row is checked against its entity, as ours are)."""
    for t in TABLES:
        conn.execute(f"CREATE TABLE {t.replace('context_', 'raw_')} (LIKE {t} INCLUDING ALL)")
    fks = conn.execute("SELECT conrelid::regclass::text, pg_get_constraintdef(oid) FROM pg_constraint "
                       "WHERE contype = 'f' AND conrelid::regclass::text = ANY(%s)", (TABLES,)).fetchall()
    for table, definition in fks:
        conn.execute(f"ALTER TABLE {table.replace('context_', 'raw_')} ADD "
                     f"{re.sub(r'REFERENCES context_', 'REFERENCES raw_', definition)}")
    conn.execute("INSERT INTO raw_tenants (id, name, created_at) VALUES (1, '', now())")
    conn.commit()


def _insert_sql(table: str, row: dict[str, Any], style: str) -> str:
    cols = list(row)
    ph = ", ".join((f":{c}" if style == "named" else f"%({c})s") for c in cols)
    return f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({ph})"


def upsert_raw(url: str, kind: str, rows: RawRows, n: int) -> float:
    """Entities/s of the same rows written with the driver's executemany, one transaction per batch."""
    parts = [("raw_entities", rows.entities), ("raw_entity_types", rows.types), ("raw_attr_index", rows.values),
             ("raw_geo_index", rows.geo)]
    if kind == "sqlite":
        conn = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
        for p in ("journal_mode=WAL", "foreign_keys=ON", "busy_timeout=10000", "synchronous=NORMAL"):
            conn.execute(f"PRAGMA {p}")
        _sqlite_raw_schema(conn)
        sqls = {t: _insert_sql(t, data[0][0], "named") for t, data in parts}
        t0 = time.perf_counter()
        for b in range(len(rows.entities)):
            conn.execute("BEGIN IMMEDIATE")
            for t, data in parts:
                if data[b]:
                    conn.executemany(sqls[t], data[b])
            conn.execute("COMMIT")
        rate = n / (time.perf_counter() - t0)
        conn.close()
        return rate
    import psycopg

    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as conn:
        _pg_raw_schema(conn)
        sqls = {t: _insert_sql(t, data[0][0], "pyformat") for t, data in parts}
        t0 = time.perf_counter()
        for b in range(len(rows.entities)):
            with conn.cursor() as cur:
                for t, data in parts:
                    if data[b]:
                        cur.executemany(sqls[t], data[b])
            conn.commit()
        return n / (time.perf_counter() - t0)


def row_counts(url: str, kind: str) -> dict[str, int]:
    """Rows per table, ours and raw_*, to show both writers wrote the same rows."""
    from sqlalchemy import create_engine, inspect, text

    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            names = set(inspect(conn).get_table_names())
            out = {}
            for t in TABLES[1:]:
                for name in (t, t.replace("context_", "raw_")):
                    if name in names:
                        out[name] = conn.execute(text(f"SELECT count(*) FROM {name}")).scalar_one()
            return out
    finally:
        engine.dispose()


# --------------------------------------------------------------------------------------------------- (c)(d) queries


def percentile(values: list[float], p: float) -> float:
    s = sorted(values)
    k = (len(s) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def query_latencies(url: str, workdir: Path, requests: int, reps: int, budget: float
                    ) -> dict[str, list[tuple[float, float, int, int]]]:
    """Per repetition and query: (p50 ms, p95 ms, entities returned, requests timed); each query and repetition
    stops early after `budget` seconds (then fewer than `requests` were timed, and the doc says so)."""

    async def run() -> dict[str, list[tuple[float, float, int, int]]]:
        out: dict[str, list[tuple[float, float, int, int]]] = {"q": [], "geo": []}
        async with App(url, workdir) as client:
            for _ in range(reps):
                for name, params in (("q", Q_PARAMS), ("geo", GEO_PARAMS)):
                    t_first = time.perf_counter()
                    first = await client.get("/ngsi-ld/v1/entities", params=params)
                    t_first = time.perf_counter() - t_first
                    if first.status_code != 200:
                        raise RuntimeError(f"query failed: {first.status_code} {first.text[:500]}")
                    if t_first > budget / 4:
                        # Pathologically slow (seconds to minutes per request): one sample, once, is the measure.
                        if not out[name]:
                            ms = t_first * 1000
                            out[name].append((ms, ms, len(first.json()), 1))
                        continue
                    for _ in range(10 if t_first < 0.2 else 1):  # warm-up
                        await client.get("/ngsi-ld/v1/entities", params=params)
                    times: list[float] = []
                    stop = time.perf_counter() + budget
                    for _ in range(requests):
                        if time.perf_counter() > stop and len(times) >= 5:
                            break
                        t0 = time.perf_counter()
                        r = await client.get("/ngsi-ld/v1/entities", params=params)
                        times.append((time.perf_counter() - t0) * 1000)
                        if r.status_code != 200:
                            raise RuntimeError(f"query failed: {r.status_code}")
                    out[name].append((percentile(times, 50), percentile(times, 95), len(first.json()), len(times)))
        return out

    return asyncio.run(run())


def profile_query(url: str, workdir: Path, params: dict[str, str], requests: int, top: int = 12) -> str:
    """cProfile of `requests` GETs in-process: the top functions by cumulative time (for the doc's hot spots)."""
    import cProfile
    import io
    import pstats

    async def run() -> str:
        async with App(url, workdir) as client:
            await client.get("/ngsi-ld/v1/entities", params=params)
            prof = cProfile.Profile()
            prof.enable()
            for _ in range(requests):
                await client.get("/ngsi-ld/v1/entities", params=params)
            prof.disable()
        buf = io.StringIO()
        pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(top)
        return buf.getvalue()

    return asyncio.run(run())


# --------------------------------------------------------------------------------------------------- (b) load


LUA = """
math.randomseed(os.time())
local n = {n}
request = function()
  local i = math.random(0, n - 1)
  local path = string.format("/ngsi-ld/v1/entities/urn:ngsi-ld:AirQualityObserved:bench-%07d/attrs", i)
  local body = string.format('{{"pm25":{{"type":"Property","value":%d}}}}', math.random(0, 150))
  return wrk.format("PATCH", path, {{["Content-Type"] = "application/json"}}, body)
end
"""


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wrk(url: str, duration: int, connections: int, script: Path | None) -> tuple[float, int, str]:
    cmd = ["wrk", "-t2", f"-c{connections}", f"-d{duration}s", "--latency"]
    if script is not None:
        cmd += ["-s", str(script)]
    out = subprocess.run([*cmd, url], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    p50 = re.search(r"50%\s+(\S+)", out)
    return rps, int(bad.group(1)) if bad else 0, p50.group(1) if p50 else "?"


def load_test(url: str, workdir: Path, n: int, duration: int, reps: int, connections: int
              ) -> list[tuple[float, float, int]]:
    """`cityplus serve --workers 2` on `url`; per pair: (healthz req/s, PATCH req/s, PATCH non-2xx)."""
    if shutil.which("wrk") is None:
        raise RuntimeError("wrk not installed (apt-get install -y wrk)")
    with _server(url, workdir, 2, "serve.log") as (_, base):
        script = workdir / "patch.lua"
        script.write_text(LUA.format(n=n))
        _wrk(base + "/healthz", 3, connections, None)  # warm-up both workers
        _wrk(base, 3, connections, script)
        out = []
        for _ in range(reps):
            h, _, _ = _wrk(base + "/healthz", duration, connections, None)
            p, bad, _ = _wrk(base, duration, connections, script)
            out.append((h, p, bad))
        return out


@contextmanager
def _server(url: str, workdir: Path, workers: int, log_name: str) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """`cityplus serve` on `url` (NGSI-LD auth off) until the block ends: (process, base URL) once /healthz answers."""
    port = _free_port()
    env = {**os.environ, "CITYPLUS_DATABASE_URL": url, "CITYPLUS_CONTEXT_AUTH": "none",
           "CITYPLUS_VAR_DIR": str(workdir), "CITYPLUS_SECRET_KEY": "bench-secret-key-" + "x" * 40}
    log = (workdir / log_name).open("w")
    server = subprocess.Popen([sys.executable, "-m", "cityplus", "serve", "--workers", str(workers), "--port",
                               str(port)], env=env, stdout=log, stderr=log, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 60
        while True:
            try:
                urllib.request.urlopen(base + "/healthz", timeout=2).read()
                break
            except OSError:
                if time.time() > deadline or server.poll() is not None:
                    raise RuntimeError(f"server did not start; see {workdir / log_name}") from None
                time.sleep(0.5)
        yield server, base
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
        log.close()


# --------------------------------------------------------------------------------------------------- (e) memory


def _vm(pid: int, key: str) -> int:
    """A /proc/<pid>/status memory figure in KiB (VmRSS, VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def rss_test(be: Backend, workdir: Path, n: int, batch: int) -> dict[str, Any]:
    """Store n entities (service.batch_write, in a child process), then serve them: peak RSS of each.

    The server (`cityplus serve --workers 1`) answers the (c) and (d) queries, a count over all entities, a page at
    a deep offset and GET /types (which reads every entity) before its peak RSS (VmHWM) is read.
    """
    url = be.fresh("rss")
    loader = subprocess.run([sys.executable, "-c", _RSS_LOADER, url, str(n), str(batch)], capture_output=True,
                            text=True, cwd=REPO, timeout=6 * 3600)
    if loader.returncode != 0:
        raise RuntimeError(f"loader failed: {loader.stderr[-2000:]}")
    load_kib, load_s = (float(x) for x in loader.stdout.split())
    if be.kind == "postgres":
        be.analyze(url)
    timings: dict[str, float] = {}
    with _server(url, workdir, 1, "serve-rss.log") as (server, root):
        base = root + "/ngsi-ld/v1"
        idle_kib = _vm(server.pid, "VmRSS")
        queries = {"q": Q_PARAMS, "geo": GEO_PARAMS, "count": {**Q_PARAMS, "count": "true"},
                   "count all": {"type": "AirQualityObserved", "count": "true", "limit": "0"},
                   "offset n/2": {"type": "AirQualityObserved", "offset": str(n // 2)}}
        for name, params in [*queries.items(), ("types", None)]:
            url_q = f"{base}/types?details=true" if params is None else \
                f"{base}/entities?{urllib.parse.urlencode(params)}"
            times = 1 if name in ("types", "count all", "offset n/2") else 20
            t0 = time.perf_counter()
            for _ in range(times):
                urllib.request.urlopen(url_q, timeout=3600).read()
            timings[name] = (time.perf_counter() - t0) * 1000 / times
        peak_kib = _vm(server.pid, "VmHWM")
    size = be.size(url)
    be.drop(url)
    return {"n": n, "load_s": load_s, "loader_peak_mib": load_kib / 1024, "server_idle_mib": idle_kib / 1024,
            "server_peak_mib": peak_kib / 1024, "timings_ms": timings, "db_mib": size / 2**20}


_RSS_LOADER = """
import resource, sys, time
from bench.context_broker import _quiet_logging, entity, expanded
import random
from cityplus.core.db import Database
from cityplus.modules.context import service
_quiet_logging()
url, n, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
db = Database(url)
rng = random.Random(20261124)
t0 = time.perf_counter()
for start in range(0, n, batch):
    group = expanded([entity(i, rng) for i in range(start, min(n, start + batch))])
    with db.session() as s:
        res = service.batch_write(s, None, "upsert", group)
        assert not res.errors, res.errors[:3]
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, time.perf_counter() - t0)
"""


# --------------------------------------------------------------------------------------------------- main


def _per_rep(reps: list[tuple[float, float, int, int]], md: bool = False) -> str:
    if md:
        return ", ".join(f"{a:.1f}/{b:.1f}" for a, b, _, _ in reps)
    return str([(round(a, 1), round(b, 1)) for a, b, _, _ in reps])


def _timed(reps: list[tuple[float, float, int, int]], requested: int) -> str:
    counts = [r[3] for r in reps]
    if counts == [1]:
        return "too slow to sample: ONE request, its latency shown as p50 and p95"
    if min(counts) < requested:
        return f"{min(counts)}–{max(counts)} timed/rep (time-boxed)"
    return f"{requested} timed/rep"


def _fmt_ratio(r: float) -> str:
    return f"{100 * r:.1f} %"


def _met(ok: bool) -> str:
    return "**met**" if ok else "**missed**"


def run_backend(kind: str, args: argparse.Namespace, workdir: Path) -> list[str]:
    """Run every benchmark on one backend; return the Markdown lines of its results."""
    from cityplus.modules.context import query_sql

    be = Backend(kind, workdir)
    lines: list[str] = []
    try:
        version = be.version()
        print(f"\n=== {kind}: {version}, n={args.n}, batch={args.batch}, reps={args.reps} ===", flush=True)
        ents = make_entities(args.n)
        un = min(args.upsert_n or args.n, args.n)
        groups_raw = batches(ents, args.batch)
        bodies = [json.dumps(g, ensure_ascii=False).encode() for g in groups_raw]
        exp = expanded(ents[:un])
        groups = batches(exp, args.batch)
        rows = raw_rows(groups, kind)
        ub = bodies[:len(groups)]
        per_entity = 1 + 1 + len(query_sql.index_rows(1, exp[0])) + 1
        http_r, svc_r, raw_r = [], [], []
        keep = None
        counts: dict[str, int] = {}
        for rep in range(args.reps):
            url_h = be.fresh(f"http{rep}")
            http_r.append(upsert_http(url_h, workdir, ub, un))
            url_s = be.fresh(f"svc{rep}")
            svc_r.append(upsert_service(url_s, groups, un))
            raw_r.append(upsert_raw(url_s, kind, rows, un))  # raw_* tables beside ours, same database
            print(f"  upsert rep {rep + 1} ({un:,} entities): http {http_r[-1]:,.0f}/s  service {svc_r[-1]:,.0f}/s  "
                  f"raw {raw_r[-1]:,.0f}/s", flush=True)
            if rep == args.reps - 1:
                counts = row_counts(url_s, kind)
            be.drop(url_s)
            if keep is not None:
                be.drop(keep)
            keep = url_h
        load_rate = None
        if un < args.n:
            be.drop(keep)
            keep = be.fresh("data")
            load_rate = upsert_http(keep, workdir, bodies, args.n)
            print(f"  loaded {args.n:,} entities through HTTP upsert: {load_rate:,.0f}/s", flush=True)
        assert keep is not None
        if kind == "postgres":
            be.analyze(keep)
        ratios = [h / r for h, r in zip(http_r, raw_r, strict=True)]
        svc_ratios = [s / r for s, r in zip(svc_r, raw_r, strict=True)]
        med = statistics.median
        up_ratio = med(ratios)

        lat = query_latencies(keep, workdir, args.requests, args.reps, args.query_budget)
        q50, q95 = med(x[0] for x in lat["q"]), med(x[1] for x in lat["q"])
        g50, g95 = med(x[0] for x in lat["geo"]), med(x[1] for x in lat["geo"])
        print(f"  q:   p50 {q50:.1f} ms  p95 {q95:.1f} ms  (per rep {_per_rep(lat['q'])})", flush=True)
        print(f"  geo: p50 {g50:.1f} ms  p95 {g95:.1f} ms  (per rep {_per_rep(lat['geo'])})", flush=True)

        load = None
        if kind == "postgres" and not args.no_load:
            try:
                load = load_test(keep, workdir, args.n, args.duration, args.reps, args.connections)
                for h, p, bad in load:
                    print(f"  load: healthz {h:,.0f} req/s  PATCH {p:,.0f} req/s  ratio {p / h:.1%}  "
                          f"(PATCH non-2xx: {bad})", flush=True)
            except Exception as exc:  # noqa: BLE001 - reported, the rest of the results still count
                print(f"  load test skipped: {exc}", flush=True)

        lines += [
            f"### {kind} — {version}, N = {args.n:,}" + (" (reduced size)" if args.n < 100_000 else ""),
            "",
            f"Rows written per entity by both writers: {per_entity} (1 entity, 1 type, "
            f"{per_entity - 3} attribute-index, 1 geo-index); counts after the last repetition: "
            + ", ".join(f"{k} {v:,}" for k, v in counts.items()) + ".",
            "",
            "| measure | median | per repetition | target | result |",
            "|---|---|---|---|---|",
            f"| (a) upsert, HTTP API (entities/s), {un:,} per repetition | {med(http_r):,.0f} | "
            f"{', '.join(f'{x:,.0f}' for x in http_r)} | | |",
            f"| (a) upsert, service.batch_write (entities/s) | {med(svc_r):,.0f} | "
            f"{', '.join(f'{x:,.0f}' for x in svc_r)} | | |",
            f"| (a) raw executemany, same rows (entities/s) | {med(raw_r):,.0f} | "
            f"{', '.join(f'{x:,.0f}' for x in raw_r)} | | |",
            f"| (a) HTTP / raw | {_fmt_ratio(up_ratio)} | {', '.join(_fmt_ratio(x) for x in ratios)} | ≥ 25 % | "
            f"{_met(up_ratio >= TARGETS['upsert'])} |",
            f"| (a) service / raw | {_fmt_ratio(med(svc_ratios))} | {', '.join(_fmt_ratio(x) for x in svc_ratios)} "
            f"| | |",
            f"| (c) q query p50 / p95 (ms), {lat['q'][0][2]} returned, {_timed(lat['q'], args.requests)} | "
            f"{q50:.1f} / {q95:.1f} | {_per_rep(lat['q'], md=True)} | p95 ≤ 20 ms | "
            f"{_met(q95 <= TARGETS['q_p95_ms'])} |",
            f"| (d) near 2 km p50 / p95 (ms), {lat['geo'][0][2]} returned, {_timed(lat['geo'], args.requests)} | "
            f"{g50:.1f} / {g95:.1f} | {_per_rep(lat['geo'], md=True)} | p95 ≤ 20 ms | "
            f"{_met(g95 <= TARGETS['geo_p95_ms'])} |",
        ]
        if load_rate is not None:
            lines.insert(-4, f"| (a) HTTP upsert loading the {args.n:,}-entity query data set (entities/s), once | "
                             f"{load_rate:,.0f} | | | |")
        if load:
            lr = [p / h for h, p, _ in load]
            lines += [
                f"| (b) GET /healthz (req/s) | {med(h for h, _, _ in load):,.0f} | "
                f"{', '.join(f'{h:,.0f}' for h, _, _ in load)} | | |",
                f"| (b) PATCH /entities/{{id}}/attrs (req/s) | {med(p for _, p, _ in load):,.0f} | "
                f"{', '.join(f'{p:,.0f}' for _, p, _ in load)} | | |",
                f"| (b) PATCH / healthz | {_fmt_ratio(med(lr))} | {', '.join(_fmt_ratio(x) for x in lr)} | ≥ 50 % | "
                f"{_met(med(lr) >= TARGETS['patch_ratio'])} |",
            ]
            bad = sum(b for _, _, b in load)
            if bad:
                lines.append(f"\nPATCH non-2xx responses during the load runs: {bad}.")
        elif kind == "postgres":
            lines.append("| (b) PATCH / healthz | not measured | | ≥ 50 % | |")
        lines.append("")
        if args.profile:
            for name, params in (("q", Q_PARAMS), ("geo", GEO_PARAMS)):
                print(f"\n--- cProfile, {name} query, {kind} ---")
                print(profile_query(keep, workdir, params, 50))
        be.drop(keep)
    finally:
        be.cleanup()
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench context_broker", description=__doc__.split("\n")[0])
    p.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    p.add_argument("--n", type=int, default=100_000, help="entities (upserted, then queried)")
    p.add_argument("--batch", type=int, default=1000)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--requests", type=int, default=200, help="timed GETs per query and repetition")
    p.add_argument("--query-budget", type=float, default=120.0,
                   help="seconds per query and repetition before stopping early (reported)")
    p.add_argument("--upsert-n", type=int, default=0,
                   help="entities per timed upsert repetition (default: --n); the query data set is always --n")
    p.add_argument("--duration", type=int, default=20, help="seconds per wrk run (b)")
    p.add_argument("--connections", type=int, default=16, help="wrk connections (b)")
    p.add_argument("--no-load", action="store_true", help="skip (b)")
    p.add_argument("--profile", action="store_true", help="print cProfile of the queries")
    p.add_argument("--quick", action="store_true", help="smoke run: n=2000, 1 repetition, 50 requests, 5 s load")
    p.add_argument("--no-doc", action="store_true", help="do not append to docs/performance.md")
    p.add_argument("--rss", type=int, default=0, metavar="N",
                   help="(e) only: store N entities, then the peak RSS of the loader and of a serving process")
    args = p.parse_args(argv)
    if args.quick:
        args.n, args.reps, args.requests, args.duration = min(args.n, 2000), 1, 50, 5
    _quiet_logging()
    kinds = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    workdir = Path(tempfile.mkdtemp(prefix="cpbench-"))
    started = time.time()
    lines: list[str] = []
    try:
        for kind in kinds:
            lines += rss_backend(kind, args, workdir) if args.rss else run_backend(kind, args, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    cmd = "python -m bench context_broker " + " ".join(argv if argv is not None else sys.argv[1:])
    head = [
        f"## {dt.date.today().isoformat()} — context broker (`bench/context_broker.py`)"
        + (" — quick smoke run, not a measurement" if args.quick else ""),
        "",
        f"Command: `{cmd.strip()}` ({(time.time() - started) / 60:.0f} min). Machine: {os.cpu_count()} cores / "
        f"{_mem_gib()} GiB, shared with other work (noisy); Python {platform.python_version()}. Medians of "
        f"{args.reps} repetition(s); ratios from runs side by side in one repetition. Upsert: batches of "
        f"{args.batch:,} into an empty database (create path), HTTP in-process (httpx.ASGITransport); queries: "
        f"up to {args.requests} timed requests per query and repetition after 10 warm-up, time-boxed at "
        f"{args.query_budget:g} s (the count is in the table), in-process, default limit (20)."
        if not args.rss else f"Command: `{cmd.strip()}` ({(time.time() - started) / 60:.0f} min). Machine: "
        f"{os.cpu_count()} cores / {_mem_gib()} GiB, shared; Python {platform.python_version()}. (e) only: "
        f"{args.rss:,} entities stored "
        "through service.batch_write (batches of 1,000) by a loader process, then served by `cityplus serve` "
        "(1 worker), which answers the queries listed before its peak RSS (VmHWM) is read.",
        "",
    ]
    text = "\n".join(head + lines)
    print("\n" + text)
    if not args.no_doc:
        with DOC.open("a", encoding="utf-8") as f:
            f.write("\n" + text + "\n")
    return 0


def rss_backend(kind: str, args: argparse.Namespace, workdir: Path) -> list[str]:
    be = Backend(kind, workdir)
    try:
        version = be.version()
        print(f"\n=== {kind}: {version}, (e) RSS with {args.rss:,} entities ===", flush=True)
        r = rss_test(be, workdir, args.rss, args.batch)
        print(f"  {r}", flush=True)
    finally:
        be.cleanup()
    t = r["timings_ms"]
    return [
        f"### {kind} — {version}, (e) RSS with {r['n']:,} entities stored",
        "",
        "| measure | value | target | result |",
        "|---|---|---|---|",
        f"| serving process, peak RSS (VmHWM) after the queries below | {r['server_peak_mib']:,.0f} MiB | < 1 GiB | "
        f"{_met(r['server_peak_mib'] < 1024)} |",
        f"| serving process, RSS after start-up | {r['server_idle_mib']:,.0f} MiB | | |",
        f"| loader process (service.batch_write), peak RSS | {r['loader_peak_mib']:,.0f} MiB | < 1 GiB | "
        f"{_met(r['loader_peak_mib'] < 1024)} |",
        f"| load time / rate | {r['load_s']:,.0f} s / {r['n'] / r['load_s']:,.0f} entities/s | | |",
        f"| database size on disk | {r['db_mib']:,.0f} MiB | | |",
        "| queries answered (ms each): " + ", ".join(f"{k} {v:,.0f}" for k, v in t.items()) + " | | | |",
        "",
    ]


def _mem_gib() -> int:
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        return round(kb / 1024 / 1024)
    except (OSError, ValueError):
        return 0


if __name__ == "__main__":
    sys.exit(main())
