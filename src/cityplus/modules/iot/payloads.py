"""Device payloads: Ultralight 2.0 and IoTA-JSON measures, and measurement timestamps.

Ultralight 2.0 (UL): `key|value|key|value`, several measure groups separated by `#`, each optionally led by an
ISO 8601 timestamp (`2026-11-24T08:00:00Z|t|23.5`). IoTA-JSON: an object of measures (`{"t": 23.5, "h": 61}`) or a
list of such objects; a `TimeInstant` measure is the timestamp. Values stay as the device sent them (UL: strings);
the mapping converts them to the provisioned types.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cityplus.modules.iot.errors import MalformedPayload

TIMESTAMP_MEASURE = "TimeInstant"
MAX_MEASURES = 500
_KEY_RE = re.compile(r"^[^\s|#<>\"'=;()\[\]\x00-\x1f]{1,256}$")


@dataclass
class MeasureGroup:
    """The measures of one observation, with the observation's own timestamp when the device gave one."""

    values: dict[str, Any] = field(default_factory=dict)
    timestamp: datetime | None = None


def parse_timestamp(value: Any, where: str = "timestamp") -> datetime:
    """An ISO 8601 date-time (UTC when it names no zone)."""
    if not isinstance(value, str) or not 10 <= len(value) <= 40:
        raise MalformedPayload(f"{where} must be an ISO 8601 date-time, not {str(value)[:40]!r}")
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise MalformedPayload(f"{where} is not an ISO 8601 date-time: {value[:40]!r}") from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _looks_like_timestamp(text: str) -> bool:
    return bool(re.match(r"^\d{4}-\d{2}-\d{2}T", text.strip()))


def _check_key(key: str) -> str:
    if not _KEY_RE.match(key):
        raise MalformedPayload(f"invalid measure name {key[:40]!r}")
    return key


def _text(payload: bytes) -> str:
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedPayload("the payload is not UTF-8 text") from None
    if "\x00" in text or "\\u0000" in text:
        raise MalformedPayload("the payload contains NUL characters")  # no database stores them in text
    return text


def _finite(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise MalformedPayload(f"number {text[:40]} is out of range")
    return value


def _no_constant(name: str) -> Any:
    raise MalformedPayload(f"{name} is not a JSON number")


def parse_ultralight(payload: bytes) -> list[MeasureGroup]:
    """Parse an Ultralight 2.0 measure payload; MalformedPayload names what is wrong."""
    text = _text(payload).strip()
    if not text:
        raise MalformedPayload("empty Ultralight payload")
    groups: list[MeasureGroup] = []
    count = 0
    for n, raw in enumerate(re.split(r"[#\r\n]+", text), start=1):
        raw = raw.strip()
        if not raw:
            continue
        fields = raw.split("|")
        group = MeasureGroup()
        if len(fields) % 2 == 1:
            if not _looks_like_timestamp(fields[0]) or len(fields) == 1:
                raise MalformedPayload(f"measure group {n}: expected key|value pairs, got {raw[:60]!r}")
            group.timestamp = parse_timestamp(fields[0], f"measure group {n}: timestamp")
            fields = fields[1:]
        for i in range(0, len(fields), 2):
            key = _check_key(fields[i].strip())
            group.values[key] = fields[i + 1].strip()
            count += 1
        groups.append(group)
    if not groups:
        raise MalformedPayload("empty Ultralight payload")
    if count > MAX_MEASURES:
        raise MalformedPayload(f"more than {MAX_MEASURES} measures in one message")
    return _take_timestamps(groups)


def parse_json(payload: bytes) -> list[MeasureGroup]:
    """Parse an IoTA-JSON measure payload (an object, or a list of objects for several observations)."""
    try:
        body = json.loads(_text(payload), parse_float=_finite, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise MalformedPayload(f"the payload is not valid JSON: {exc}") from None
    except RecursionError:
        raise MalformedPayload("the JSON payload is nested too deeply") from None
    items = body if isinstance(body, list) else [body]
    if not items or not all(isinstance(i, dict) for i in items):
        raise MalformedPayload("a JSON measure payload must be an object (or a non-empty list of objects)")
    if sum(len(i) for i in items) > MAX_MEASURES:
        raise MalformedPayload(f"more than {MAX_MEASURES} measures in one message")
    groups = []
    for item in items:
        values = {}
        for key, value in item.items():
            if value is None:
                continue  # nothing measured
            values[_check_key(key)] = value
        groups.append(MeasureGroup(values))
    return _take_timestamps(groups)


def parse_single(payload: bytes, object_id: str, *, json_values: bool) -> list[MeasureGroup]:
    """The payload of a single-attribute topic (`/<apikey>/<device>/attrs/<object_id>`): the raw value."""
    text = _text(payload).strip()
    value: Any = text
    if json_values:
        try:
            value = json.loads(text, parse_float=_finite, parse_constant=_no_constant)
        except (json.JSONDecodeError, RecursionError):
            value = text  # a bare string
    if value in ("", None):
        raise MalformedPayload(f"empty value for {object_id}")
    return _take_timestamps([MeasureGroup({_check_key(object_id): value})])


def _take_timestamps(groups: list[MeasureGroup]) -> list[MeasureGroup]:
    """A TimeInstant measure is the observation's timestamp, not an attribute."""
    for g in groups:
        if TIMESTAMP_MEASURE in g.values:
            g.timestamp = parse_timestamp(g.values.pop(TIMESTAMP_MEASURE), TIMESTAMP_MEASURE)
    return groups
