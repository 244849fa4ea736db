"""DataStore (数据存储): uploaded tabular files as queryable tables, one table per resource.

A table is named `opendata_ds_<resource uuid hex>`; its columns are `c1 … cn` and `_id`, so nothing a publisher or
a caller writes ever becomes an SQL identifier: field names map to columns through the resource's `fields`.
Loading happens in the caller's transaction (PostgreSQL and SQLite both have transactional DDL), so a failure at any
row leaves nothing behind.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import json
import re
from collections.abc import Callable, Iterable, Iterator
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import charset_normalizer
from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    Double,
    Integer,
    MetaData,
    Table,
    Text,
    and_,
    asc,
    delete,
    desc,
    func,
    insert,
    or_,
    select,
    true,
)
from sqlalchemy.orm import Session

from cityplus.core.errors import Unprocessable
from cityplus.modules.opendata.models import Resource, ResourceFile
from cityplus.modules.opendata.settings import opendata_settings

TYPES = ("int", "numeric", "date", "timestamp", "bool", "text")  # inference preference order
SQL_TYPES: dict[str, Any] = {"text": Text, "int": BigInteger, "numeric": Double, "bool": Boolean, "date": Date,
                             "timestamp": DateTime}
RESERVED = {"_id", "_full_text"}
BATCH = 1000


class DataError(Unprocessable):
    """The uploaded data cannot be loaded (encoding, shape, a value that does not fit its type)."""


# --- values --------------------------------------------------------------------------------------------------

_INT = re.compile(r"^[+-]?(?:\d{1,3}(?:,\d{3})+|\d+)$")
_NUM = re.compile(r"^[+-]?(?:(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+)(?:[eE][+-]?\d+)?$")
_DATE = re.compile(r"^(\d{4})(?:[-/.](\d{1,2})[-/.](\d{1,2})|年(\d{1,2})月(\d{1,2})日)$")
_TS = re.compile(r"^(\d{4})(?:[-/.](\d{1,2})[-/.](\d{1,2})|年(\d{1,2})月(\d{1,2})日)(?:[T ]|\s*)"
                 r"(\d{1,2})[:时](\d{2})(?:[:分](\d{2})(?:\.(\d{1,6}))?秒?)?$")
BOOLS = {"true": True, "false": False, "yes": True, "no": False, "是": True, "否": False, "y": True, "n": False}
INT64 = 2**63


def to_int(s: str) -> int:
    if not _INT.match(s):
        raise ValueError(s)
    v = int(s.replace(",", ""))
    if not -INT64 <= v < INT64:
        raise ValueError(s)
    return v


def to_numeric(s: str) -> float:
    if not _NUM.match(s):
        raise ValueError(s)
    v = float(s.replace(",", ""))
    if v != v or v in (float("inf"), float("-inf")):
        raise ValueError(s)
    return v


def to_date(s: str) -> date:
    m = _DATE.match(s)
    if not m:
        raise ValueError(s)
    y, mo, d = m.group(1), m.group(2) or m.group(4), m.group(3) or m.group(5)
    return date(int(y), int(mo), int(d))


def to_timestamp(s: str) -> datetime:
    m = _TS.match(s)
    if not m:
        try:
            return datetime.combine(to_date(s), datetime.min.time())
        except ValueError:
            pass
        try:  # ISO 8601 with T and seconds; offsets are normalised away (the column is local time)
            v = datetime.fromisoformat(s)
        except ValueError:
            raise ValueError(s) from None
        return v.replace(tzinfo=None)
    y, mo, d = m.group(1), m.group(2) or m.group(4), m.group(3) or m.group(5)
    frac = (m.group(9) or "0").ljust(6, "0")
    return datetime(int(y), int(mo), int(d), int(m.group(6)), int(m.group(7)), int(m.group(8) or 0), int(frac))


def to_bool(s: str) -> bool:
    try:
        return BOOLS[s.lower()]
    except KeyError:
        raise ValueError(s) from None


CONVERT: dict[str, Callable[[str], Any]] = {"int": to_int, "numeric": to_numeric, "date": to_date,
                                            "timestamp": to_timestamp, "bool": to_bool, "text": str}


def infer_types(columns: int, rows: Iterable[list[str]]) -> list[str]:
    """For each column the first of TYPES every non-empty value parses as (all empty: text)."""
    candidates = [set(TYPES[:-1]) for _ in range(columns)]
    seen = [False] * columns
    for row in rows:
        for i, raw in enumerate(row):
            s = raw.strip()
            if not s or not candidates[i]:
                continue
            seen[i] = True
            for t in list(candidates[i]):
                try:
                    CONVERT[t](s)
                except (ValueError, OverflowError):
                    candidates[i].discard(t)
    return [next((t for t in TYPES if t in candidates[i]), "text") if seen[i] else "text" for i in range(columns)]


# --- reading files ----------------------------------------------------------------------------------------------

GB_FAMILY = {"gb18030", "gbk", "gb2312", "hz"}


def detect_encoding(data: bytes) -> str:
    """UTF-8 (with or without BOM) when the bytes are valid UTF-8; GB18030 (a superset of GBK) when the detector
    finds it plausible; otherwise the detector's best guess. Mixed encodings have no plausible reading: refused."""
    if data.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    try:
        data.decode("utf-8")
        return "utf-8"
    except UnicodeDecodeError:
        pass
    matches = charset_normalizer.from_bytes(data[: 1024 * 1024])
    encodings = [m.encoding for m in matches]
    if any(e in GB_FAMILY for e in encodings):
        return "gb18030"
    if encodings:
        return encodings[0]
    raise DataError("cannot determine the file's text encoding (mixed encodings?); save it as UTF-8 or GB18030",
                    errors=[{"field": "upload", "message": "unknown or mixed text encoding"}])


def decode(data: bytes) -> tuple[str, str]:
    enc = detect_encoding(data)
    try:
        return data.decode(enc), enc
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise DataError(f"the file is not valid {enc} at line {line} (mixed encodings?)",
                        errors=[{"field": "upload", "message": f"invalid {enc} at line {line}"}]) from None


def format_of(filename: str) -> str:
    ext = filename.rsplit(".", 1)[-1].lower() if "." in filename else ""
    return {"csv": "CSV", "txt": "CSV", "xlsx": "XLSX", "json": "JSON", "geojson": "GEOJSON"}.get(ext, ext.upper()[:16])


Table_ = tuple[list[str], Callable[[], Iterator[list[str]]]]  # header, a fresh row iterator (read twice)


def _csv(text: str) -> Table_:
    def rows() -> Iterator[list[str]]:
        reader = csv.reader(io.StringIO(text, newline=""), strict=True)
        try:
            next(reader, None)
            for row in reader:
                if not row:  # blank line
                    continue
                if len(row) != len(header):
                    raise DataError(f"line {reader.line_num} has {len(row)} cells, the header has {len(header)}",
                                    errors=[{"field": "upload", "message": f"ragged row at line {reader.line_num}"}])
                yield row
        except csv.Error as exc:
            raise DataError(f"malformed CSV at line {reader.line_num}: {exc}",
                            errors=[{"field": "upload", "message": f"malformed CSV at line {reader.line_num}"}]
                            ) from None

    try:
        header = next(csv.reader(io.StringIO(text, newline=""), strict=True), None)
    except csv.Error as exc:
        raise DataError(f"malformed CSV header: {exc}", errors=[{"field": "upload", "message": "malformed"}]) from None
    if not header:
        raise DataError("the file is empty", errors=[{"field": "upload", "message": "empty"}])
    return header, rows


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, datetime):
        return v.isoformat(sep=" ") if (v.hour, v.minute, v.second) != (0, 0, 0) else v.date().isoformat()
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    if isinstance(v, dict | list):
        return json.dumps(v, ensure_ascii=False)
    return str(v)


def _xlsx(data: bytes) -> Table_:
    import zipfile

    from openpyxl import load_workbook

    try:
        wb = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except (zipfile.BadZipFile, KeyError, ValueError, OSError) as exc:
        raise DataError(f"not a readable XLSX workbook: {exc}",
                        errors=[{"field": "upload", "message": "not an XLSX workbook"}]) from None
    ws = wb.worksheets[0]
    all_rows = [[_cell(v) for v in r] for r in ws.iter_rows(values_only=True)]
    wb.close()
    while all_rows and not any(all_rows[-1]):
        all_rows.pop()
    if not all_rows:
        raise DataError("the first sheet is empty", errors=[{"field": "upload", "message": "empty"}])
    header = all_rows[0]
    while header and not header[-1]:
        header.pop()
    width = len(header)
    body = []
    for n, r in enumerate(all_rows[1:], start=2):
        if any(r[width:]):
            raise DataError(f"row {n} has values beyond the header's {width} columns",
                            errors=[{"field": "upload", "message": f"ragged row {n}"}])
        if any(r):
            body.append((r + [""] * width)[:width])
    return header, lambda: iter(body)


def _records(items: list[Any], what: str) -> Table_:
    header: list[str] = []
    for n, item in enumerate(items):
        if not isinstance(item, dict):
            raise DataError(f"{what} {n} is not an object", errors=[{"field": "upload", "message": "not an object"}])
        for k in item:
            if k not in header:
                header.append(str(k))
    body = [[_cell(item.get(k)) for k in header] for item in items]
    return header, lambda: iter(body)


def _json(text: str, geo: bool) -> Table_:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"invalid JSON at line {exc.lineno}: {exc.msg}",
                        errors=[{"field": "upload", "message": "invalid JSON"}]) from None
    if isinstance(doc, dict) and doc.get("type") == "FeatureCollection":
        feats = doc.get("features")
        if not isinstance(feats, list) or not all(isinstance(f, dict) for f in feats):
            raise DataError("FeatureCollection.features must be a list of features",
                            errors=[{"field": "upload", "message": "bad GeoJSON"}])
        items = []
        for f in feats:
            props = f.get("properties") or {}
            if not isinstance(props, dict):
                raise DataError("feature properties must be objects", errors=[{"field": "upload", "message": "bad"}])
            items.append({**props, "geometry": f.get("geometry")})
        return _records(items, "feature")
    if geo:
        raise DataError("a GeoJSON resource must be a FeatureCollection",
                        errors=[{"field": "upload", "message": "not a FeatureCollection"}])
    if isinstance(doc, dict) and isinstance(doc.get("records"), list):
        doc = doc["records"]
    if not isinstance(doc, list) or not doc:
        raise DataError("JSON data must be a non-empty array of objects (or {\"records\": [...]})",
                        errors=[{"field": "upload", "message": "not an array of objects"}])
    return _records(doc, "item")


def read_table(filename: str, data: bytes) -> tuple[Table_, str | None]:
    """Header and rows of a tabular upload, and the text encoding it was read with."""
    fmt = format_of(filename)
    if fmt == "XLSX":
        return _xlsx(data), None
    text, enc = decode(data)
    if fmt in ("JSON", "GEOJSON"):
        return _json(text, fmt == "GEOJSON"), enc
    return _csv(text), enc


def _field_ids(header: list[str]) -> list[str]:
    out: list[str] = []
    for i, h in enumerate(header, start=1):
        name = re.sub(r"[\x00-\x1f\"]", "", (h or "").strip())[:100] or f"column_{i}"
        if name in RESERVED:
            name = name.lstrip("_") or f"column_{i}"
        base, n = name, 2
        while name in out:
            name = f"{base}_{n}"
            n += 1
        out.append(name)
    return out


# --- tables -----------------------------------------------------------------------------------------------------


def table_name(res: Resource) -> str:
    return "opendata_ds_" + res.id.replace("-", "")


def table_of(res: Resource) -> Table:
    """The SQLAlchemy table of a resource's DataStore (its own MetaData: never part of migrations)."""
    # INTEGER on SQLite so that _id is the rowid alias (SQLite only auto-numbers "INTEGER PRIMARY KEY")
    cols = [Column("_id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)]
    cols += [Column(f["col"], SQL_TYPES[f["type"]]) for f in res.fields]
    return Table(res.datastore_table or table_name(res), MetaData(), *cols)


def drop(session: Session, res: Resource) -> None:
    if res.datastore_table:
        table_of(res).drop(session.connection(), checkfirst=True)
        res.datastore_table = None
        res.fields = []
        res.row_count = 0


def _index_pk(session: Session, res: Resource, table: Table) -> None:
    from sqlalchemy import Index

    if res.primary_key:
        cols = [table.c[column_of(res, f)] for f in res.primary_key]
        Index(f"{table.name}_pk", *cols, unique=True).create(session.connection())


def create(session: Session, res: Resource, fields: list[dict[str, Any]], primary_key: list[str] | None = None
           ) -> Table:
    """(Re)create the resource's DataStore table with `fields` ({id, type}); the old one is dropped."""
    if len(fields) > opendata_settings().max_columns:
        raise DataError(f"too many columns ({len(fields)}; at most {opendata_settings().max_columns})")
    drop(session, res)
    res.fields = [{"id": f["id"], "type": f.get("type") or "text", "col": f"c{i}", "label": f.get("label") or ""}
                  for i, f in enumerate(fields, start=1)]
    ids = [f["id"] for f in res.fields]
    unknown = [k for k in primary_key or [] if k not in ids]
    if unknown:
        raise DataError(f"primary key fields {unknown} are not fields",
                        errors=[{"field": "primary_key", "message": "unknown field"}])
    res.primary_key = list(primary_key or [])
    res.datastore_table = table_name(res)
    res.row_count = 0
    table = table_of(res)
    table.create(session.connection())
    _index_pk(session, res, table)
    return table


def column_of(res: Resource, field: str) -> str:
    for f in res.fields:
        if f["id"] == field:
            return str(f["col"])
    raise DataError(f"unknown field {field!r}", errors=[{"field": field, "message": "no such field"}])


def _converted(res: Resource, rows: Iterable[list[str]], first_line: int = 2) -> Iterator[dict[str, Any]]:
    convs = [(f["col"], CONVERT[f["type"]], f["id"], f["type"]) for f in res.fields]
    for n, row in enumerate(rows, start=first_line):
        out: dict[str, Any] = {}
        for (col, conv, fid, ftype), raw in zip(convs, row, strict=True):
            s = raw.strip() if ftype != "text" else raw
            if s == "" and ftype != "text":
                out[col] = None
                continue
            try:
                out[col] = conv(s)
            except (ValueError, OverflowError):
                raise DataError(f"row {n}, field {fid!r}: {raw[:50]!r} is not a valid {ftype}; "
                                "correct the field type (e.g. to text) or the data",
                                errors=[{"field": fid, "message": f"row {n}: not a {ftype}"}]) from None
        yield out


def _insert(session: Session, table: Table, records: Iterable[dict[str, Any]]) -> int:
    n = 0
    batch: list[dict[str, Any]] = []
    for rec in records:
        batch.append(rec)
        if len(batch) >= BATCH:
            session.execute(insert(table), batch)
            n += len(batch)
            batch = []
    if batch:
        session.execute(insert(table), batch)
        n += len(batch)
    return n


def store_upload(session: Session, res: Resource, filename: str, data: bytes, *,
                 field_types: dict[str, str] | None = None, max_bytes: int | None = None) -> None:
    """Keep an uploaded file and, when it is tabular, load it into the resource's DataStore table."""
    limit = max_bytes or opendata_settings().max_upload_bytes
    if len(data) > limit:
        raise DataError(f"the file has {len(data)} bytes; at most {limit} are accepted",
                        errors=[{"field": "upload", "message": f"larger than {limit} bytes"}])
    if not data:
        raise DataError("the file is empty", errors=[{"field": "upload", "message": "empty"}])
    safe_name = re.sub(r"[\x00-\x1f/\\]", "_", filename)[:255] or "upload"
    stored = session.get(ResourceFile, res.id)
    if stored is None:
        session.add(ResourceFile(resource_id=res.id, filename=safe_name, content=data))
    else:
        stored.filename, stored.content = safe_name, data
    res.size = len(data)
    res.sha256 = hashlib.sha256(data).hexdigest()
    res.format = format_of(safe_name)
    res.kind = "file"
    if res.format not in ("CSV", "XLSX", "JSON", "GEOJSON"):
        drop(session, res)
        return
    load(session, res, safe_name, data, field_types=field_types)


def load(session: Session, res: Resource, filename: str, data: bytes, *,
         field_types: dict[str, str] | None = None) -> None:
    (header, rows), enc = read_table(filename, data)
    ids = _field_ids(header)
    types = infer_types(len(ids), rows())
    overrides = dict(field_types or {})
    for name, t in overrides.items():
        if name not in ids:
            raise DataError(f"cannot set the type of {name!r}: the file has no such field",
                            errors=[{"field": name, "message": "no such field"}])
        if t not in SQL_TYPES:
            raise DataError(f"unknown type {t!r} for {name!r}; one of {', '.join(SQL_TYPES)}",
                            errors=[{"field": name, "message": "unknown type"}])
    fields = [{"id": i, "type": overrides.get(i, t)} for i, t in zip(ids, types, strict=True)]
    table = create(session, res, fields)
    res.encoding = enc
    res.row_count = _insert(session, table, _converted(res, rows()))


def retype(session: Session, res: Resource, field_types: dict[str, str]) -> None:
    """Reload the stored file with corrected field types."""
    stored = session.get(ResourceFile, res.id)
    if stored is None or not res.datastore_table:
        raise DataError("this resource has no loaded file to retype",
                        errors=[{"field": "fields", "message": "no DataStore table"}])
    current = {f["id"]: f["type"] for f in res.fields}
    load(session, res, stored.filename, stored.content, field_types={**current, **field_types})


# --- writing records (datastore_create / upsert / delete) -------------------------------------------------------


def _record_values(res: Resource, rec: dict[str, Any], n: int) -> dict[str, Any]:
    if not isinstance(rec, dict):
        raise DataError(f"record {n} is not an object", errors=[{"field": "records", "message": f"record {n}"}])
    by_id = {f["id"]: f for f in res.fields}
    out: dict[str, Any] = {}
    for k, v in rec.items():
        f = by_id.get(k)
        if f is None:
            raise DataError(f"record {n}: unknown field {k!r}", errors=[{"field": k, "message": "no such field"}])
        if v is None or (v == "" and f["type"] != "text"):
            out[f["col"]] = None
            continue
        try:
            if f["type"] == "text":
                out[f["col"]] = v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)
            elif isinstance(v, bool) and f["type"] == "bool":
                out[f["col"]] = v
            elif isinstance(v, int | float | Decimal) and not isinstance(v, bool) and f["type"] in ("int", "numeric"):
                if f["type"] == "int" and (not float(v).is_integer() or not -INT64 <= int(v) < INT64):
                    raise ValueError(v)
                out[f["col"]] = int(v) if f["type"] == "int" else float(v)
            else:
                out[f["col"]] = CONVERT[f["type"]](str(v).strip())
        except (ValueError, OverflowError):
            raise DataError(f"record {n}, field {k!r}: {str(v)[:50]!r} is not a valid {f['type']}",
                            errors=[{"field": k, "message": f"record {n}: not a {f['type']}"}]) from None
    return out


def upsert(session: Session, res: Resource, records: list[Any], method: str = "upsert") -> int:
    """Insert, update (by primary key) or upsert records; all or nothing."""
    if method not in ("insert", "update", "upsert"):
        raise DataError("method must be insert, update or upsert", errors=[{"field": "method", "message": "bad"}])
    table = table_of(res)
    values = [_record_values(res, r, n) for n, r in enumerate(records)]
    if method == "insert":
        n = _insert(session, table, values)
        res.row_count += n
        return n
    if not res.primary_key:
        raise DataError(f"{method} needs a primary key on the table",
                        errors=[{"field": "primary_key", "message": "none defined"}])
    pk_cols = [column_of(res, f) for f in res.primary_key]
    for n, v in enumerate(values):
        if any(v.get(c) is None for c in pk_cols):
            raise DataError(f"record {n} lacks its primary key {res.primary_key}",
                            errors=[{"field": "records", "message": f"record {n}: primary key missing"}])
        key = and_(*(table.c[c] == v[c] for c in pk_cols))
        existing = session.scalar(select(table.c._id).where(key))
        if existing is None:
            if method == "update":
                raise DataError(f"record {n}: no row with this primary key to update",
                                errors=[{"field": "records", "message": f"record {n}: not found"}])
            session.execute(insert(table), [v])
            res.row_count += 1
        else:
            rest = {c: x for c, x in v.items() if c not in pk_cols}
            if rest:
                session.execute(table.update().where(table.c._id == existing).values(**rest))
    return len(values)


def delete_rows(session: Session, res: Resource, filters: dict[str, Any]) -> int:
    table = table_of(res)
    cond = _filters(res, table, filters)
    n = session.execute(delete(table).where(cond)).rowcount or 0
    res.row_count = max(0, res.row_count - n)
    return n


# --- querying ----------------------------------------------------------------------------------------------------


def _filter_value(res: Resource, field: str, v: Any) -> Any:
    f = next(x for x in res.fields if x["id"] == field)
    if isinstance(v, dict | list):
        raise DataError(f"filter on {field!r} must be a value or a list of values",
                        errors=[{"field": f"filters.{field}", "message": "bad value"}])
    return _record_values(res, {field: v}, 0)[f["col"]]


def _filters(res: Resource, table: Table, filters: dict[str, Any] | None) -> Any:
    conds = []
    for field, v in (filters or {}).items():
        col = table.c[column_of(res, field)]
        if isinstance(v, list):
            conds.append(col.in_([_filter_value(res, field, x) for x in v]))
        else:
            val = _filter_value(res, field, v)
            conds.append(col.is_(None) if val is None else col == val)
    return and_(*conds) if conds else true()


_SORT = re.compile(r"^\s*(\"[^\"]+\"|[^\s,\"]+)(?:\s+(asc|desc))?\s*$", re.IGNORECASE)


def parse_sort(res: Resource, sort: str) -> list[tuple[str, bool]]:
    """`field [asc|desc], …` (quoted field names allowed) → [(field, descending)]; anything else refused."""
    out = []
    for part in sort.split(","):
        m = _SORT.match(part)
        if not m:
            raise DataError(f"cannot sort by {part.strip()!r}: use 'field [asc|desc]'",
                            errors=[{"field": "sort", "message": "malformed"}])
        name = m.group(1).strip('"')
        if name != "_id":
            column_of(res, name)
        out.append((name, (m.group(2) or "asc").lower() == "desc"))
    return out


def search(session: Session, res: Resource, *, filters: dict[str, Any] | None = None, q: str | dict[str, str] = "",
           fields: list[str] | None = None, sort: str = "", distinct: bool = False, limit: int = 100,
           offset: int = 0, include_total: bool = True) -> dict[str, Any]:
    """Rows of a resource's DataStore table: filters, full text (`q`), sort, fields, distinct, paging, total."""
    cap = opendata_settings().max_rows
    if not 0 <= limit <= cap:
        raise DataError(f"limit must be between 0 and {cap}", errors=[{"field": "limit", "message": "out of range"}])
    if offset < 0:
        raise DataError("offset must not be negative", errors=[{"field": "offset", "message": "negative"}])
    table = table_of(res)
    cond = [_filters(res, table, filters)]
    if isinstance(q, dict):
        for field, text in q.items():
            col = table.c[column_of(res, field)]
            cond.append(func.lower(col.cast(Text)).contains(str(text).lower(), autoescape=True))
    elif q:
        words = [w for w in str(q).split() if w]
        text_cols = [table.c[f["col"]] for f in res.fields]
        for w in words:
            cond.append(or_(*(func.lower(c.cast(Text)).contains(w.lower(), autoescape=True) for c in text_cols)))
    chosen = ["_id", *[f["id"] for f in res.fields]] if not fields else list(dict.fromkeys(fields))
    cols = []
    for name in chosen:
        cols.append((table.c._id if name == "_id" else table.c[column_of(res, name)]).label(name))
    stmt = select(*cols).where(*cond)
    if distinct:
        stmt = stmt.distinct()
    order = []
    for name, is_desc in parse_sort(res, sort) if sort else []:
        col = table.c._id if name == "_id" else table.c[column_of(res, name)]
        # NULLs last in both directions, on both databases (their defaults differ)
        order.append((desc(col) if is_desc else asc(col)).nulls_last())
    if not distinct or "_id" in chosen:
        order.append(table.c._id)
    stmt = stmt.order_by(*order)
    total = None
    if include_total:
        total = session.scalar(select(func.count()).select_from(stmt.order_by(None).subquery()))
    records = [dict(r._mapping) for r in session.execute(stmt.limit(limit).offset(offset))]
    out_fields = [{"id": "_id", "type": "int"} if n == "_id" else
                  {"id": n, "type": next(f["type"] for f in res.fields if f["id"] == n)} for n in chosen]
    return {"fields": out_fields, "records": [jsonable(r) for r in records], "total": total, "limit": limit,
            "offset": offset}


def jsonable(rec: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.isoformat() if isinstance(v, date | datetime) else v) for k, v in rec.items()}


def iter_rows(session: Session, res: Resource, batch: int = 5000) -> Iterator[tuple[Any, ...]]:
    """All rows in _id order, fetched in batches by key (keyset paging: flat memory, no long cursor)."""
    table = table_of(res)
    cols = [table.c[f["col"]] for f in res.fields]
    last = 0
    while True:
        rows = session.execute(select(table.c._id, *cols).where(table.c._id > last).order_by(table.c._id)
                               .limit(batch)).all()
        if not rows:
            return
        for r in rows:
            yield tuple(r[1:])
        last = rows[-1][0]
