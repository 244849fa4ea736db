"""Streamed downloads of a DataStore table as CSV, JSON, XLSX or GeoJSON (rows fetched in keyset batches, so memory
stays flat whatever the table's size), and the original uploaded file."""

from __future__ import annotations

import csv
import io
import json
import tempfile
from collections.abc import Iterator
from datetime import date, datetime
from typing import Any

from cityplus.core.db import Database
from cityplus.core.errors import NotFound, Unprocessable
from cityplus.modules.opendata import datastore
from cityplus.modules.opendata.models import Resource

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
LON_NAMES = ("lon", "lng", "longitude", "经度", "x")
LAT_NAMES = ("lat", "latitude", "纬度", "y")
MEDIA = {"csv": "text/csv; charset=utf-8", "json": "application/json",
         "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
         "geojson": "application/geo+json"}


def _plain(v: Any) -> Any:
    return v.isoformat() if isinstance(v, date | datetime) else v


def neutralise(v: Any) -> Any:
    """A text cell a spreadsheet would run as a formula (=, +, -, @) is prefixed with an apostrophe."""
    if isinstance(v, str) and v.startswith(FORMULA_START):
        return "'" + v
    return v


def _snapshot(res: Resource) -> Resource:
    """A detached copy of what the stream needs (the request's session is closed before the body is sent)."""
    return Resource(id=res.id, datastore_table=res.datastore_table, fields=list(res.fields), name=res.name)


def stream(db: Database, res: Resource, fmt: str) -> Iterator[bytes]:
    """The rows of `res` in `fmt`, produced lazily from a read-only session of its own."""
    if not res.datastore_table:
        raise NotFound("this resource has no table to download")
    if fmt not in MEDIA:
        raise Unprocessable("format must be csv, json, xlsx or geojson",
                            errors=[{"field": "format", "message": "unknown format"}])
    coords = _coordinates(res) if fmt == "geojson" else None
    snap = _snapshot(res)
    names = [f["id"] for f in snap.fields]

    def rows() -> Iterator[tuple[Any, ...]]:
        with db.read_sessionmaker() as session:
            yield from datastore.iter_rows(session, snap)

    if fmt == "csv":
        return _csv_fast(db, snap, names)
    if fmt == "json":
        return _json(names, rows())
    if fmt == "xlsx":
        return _xlsx(names, rows())
    assert coords is not None
    return _geojson(names, rows(), coords)


def _select_sql(res: Resource) -> str:
    """SELECT of a DataStore table in _id order; booleans as true/false on both databases. Only our own
    identifiers (opendata_ds_<hex>, c1 … cn) appear in it."""
    cols = []
    for f in res.fields:
        col = f'"{f["col"]}"'
        cols.append(f"CASE WHEN {col} THEN 'true' WHEN NOT {col} THEN 'false' END" if f["type"] == "bool" else col)
    return f'SELECT {", ".join(cols)} FROM "{res.datastore_table}" ORDER BY "_id"'


def _csv_fast(db: Database, res: Resource, names: list[str]) -> Iterator[bytes]:
    """CSV made by the database driver without per-row Python objects: PostgreSQL's COPY … TO STDOUT, or the
    sqlite3 cursor's tuples straight into the C csv writer."""
    head = io.StringIO()
    head.write("\ufeff")  # BOM: spreadsheet programs then read the UTF-8 Chinese text correctly
    csv.writer(head).writerow(names)
    yield head.getvalue().encode("utf-8")
    sql = _select_sql(res)
    raw = db.engine.raw_connection()
    try:
        if db.engine.dialect.name == "postgresql":
            with raw.cursor() as cur, cur.copy(f"COPY ({sql}) TO STDOUT WITH (FORMAT csv)") as copy:
                for block in copy:
                    yield bytes(block)
        else:
            cur = raw.cursor()
            cur.execute(sql)
            buf = io.StringIO()
            w = csv.writer(buf)
            while rows := cur.fetchmany(20_000):
                w.writerows(rows)
                yield buf.getvalue().encode("utf-8")
                buf.seek(0)
                buf.truncate()
            cur.close()
        raw.rollback()
    finally:
        raw.close()


def _json(names: list[str], rows: Iterator[tuple[Any, ...]]) -> Iterator[bytes]:
    yield b"["
    first = True
    for row in rows:
        item = json.dumps(dict(zip(names, (_plain(v) for v in row), strict=True)), ensure_ascii=False)
        yield (item if first else "," + item).encode("utf-8")
        first = False
    yield b"]"


def _xlsx(names: list[str], rows: Iterator[tuple[Any, ...]]) -> Iterator[bytes]:
    from openpyxl import Workbook

    wb = Workbook(write_only=True)
    ws = wb.create_sheet()
    ws.append([neutralise(n) for n in names])
    for row in rows:
        ws.append([neutralise(v) for v in row])
    with tempfile.SpooledTemporaryFile(max_size=8 * 1024 * 1024) as out:
        wb.save(out)
        out.seek(0)
        while chunk := out.read(256 * 1024):
            yield chunk


def _coordinates(res: Resource) -> tuple[str, int, int] | tuple[str, int]:
    ids = [f["id"] for f in res.fields]
    lower = [i.lower() for i in ids]
    if "geometry" in ids:
        return ("geometry", ids.index("geometry"))
    lon = next((i for i, n in enumerate(lower) if n in LON_NAMES), None)
    lat = next((i for i, n in enumerate(lower) if n in LAT_NAMES), None)
    if lon is None or lat is None:
        raise Unprocessable("the table has no coordinates (a geometry field, or longitude and latitude fields)",
                            errors=[{"field": "format", "message": "no coordinates for GeoJSON"}])
    return ("point", lon, lat)


def _geojson(names: list[str], rows: Iterator[tuple[Any, ...]], coords: tuple[Any, ...]) -> Iterator[bytes]:
    yield b'{"type":"FeatureCollection","features":['
    first = True
    skip = {coords[1]} if coords[0] == "geometry" else set(coords[1:])
    for row in rows:
        if coords[0] == "geometry":
            try:
                geometry = json.loads(row[coords[1]]) if row[coords[1]] else None
            except json.JSONDecodeError:
                geometry = None
        else:
            lon, lat = row[coords[1]], row[coords[2]]
            try:
                geometry = {"type": "Point", "coordinates": [float(lon), float(lat)]}
            except (TypeError, ValueError):
                geometry = None
        props = {n: _plain(v) for i, (n, v) in enumerate(zip(names, row, strict=True)) if i not in skip}
        feature = json.dumps({"type": "Feature", "geometry": geometry, "properties": props}, ensure_ascii=False)
        yield (feature if first else "," + feature).encode("utf-8")
        first = False
    yield b"]}"
