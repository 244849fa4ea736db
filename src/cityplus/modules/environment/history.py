"""Hourly and daily air-quality statistics of the stations from the context broker's temporal history.

The broker keeps every attribute instance a station entity receives in `context_history` (see
modules/context/temporal.py). This module groups those rows into clock hours in SQL — one statement for any number
of stations, with the broker's bucket arithmetic — and applies the data-validity rules of GB 3095—2012 §7 (Table 4)
and HJ 663—2013 in Python over the (small) hourly series: hourly values, O3 8-hour moving means, 24-hour means,
the daily maximum 8-hour O3, and the hourly and daily AQI (HJ 633, edition by date). The rules and their sources
are written in docs/modules/environment.md.

Hours: an instance observed at 10:00–10:59:59 (China time) belongs to the hour starting 10:00 (GB 3095 numbers it
hour 11, the hour ending 11:00). The hour's value is the mean of the numbers it received (a station that reports
hourly means sends one). A day is 00:00–24:00 China time.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import Integer, func, select
from sqlalchemy import cast as sql_cast
from sqlalchemy.orm import Session

from cityplus.modules.context.models import ContextHistory as H
from cityplus.modules.environment import aqi
from cityplus.modules.environment.aqi import AqiResult

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
POLLUTANTS = ("so2", "no2", "co", "o3", "pm10", "pm25")  # what stations measure, hourly
DAILY_MEAN_ITEMS = ("so2", "no2", "co", "pm10", "pm25")  # 24-hour means

# GB 3095—2012 §7, Table 4 (数据统计的有效性规定) and HJ 663—2013: see docs/modules/environment.md.
MIN_HOURS_PER_DAY = 20  # 24-hour mean: at least 20 hourly values in the day
MIN_HOURS_PER_8H = 6  # O3 8-hour moving mean: at least 6 hourly values in the 8 hours
MIN_8H_PER_DAY = 14  # daily maximum 8-hour O3: at least 14 valid 8-hour means ending 8:00 … 24:00
O3_8H_LIMIT = 160.0  # GB 3095—2012 Table 1, grade II: a daily maximum above it stands even with fewer 8-h means
FIRST_8H_END = 8  # the 8-hour means of a day are those ending at 8:00 … 24:00 (17 of them)
CHUNK = 500


def floor_hour(t: datetime) -> datetime:
    t = t.astimezone(UTC)
    return t.replace(minute=0, second=0, microsecond=0)


def hourly_means(session: Session, tenant_id: int, entity_ids: Sequence[str], iris: Mapping[str, str],
                 start: datetime, end: datetime) -> dict[str, dict[str, dict[datetime, float]]]:
    """entity → pollutant → hour start (UTC) → mean of the values observed in that hour, for hours in
    [start, end) (`start` on a whole hour). One grouped SQL statement per 500 entities over the history index
    (tenant, entity, attribute, observedAt, num) — the broker's aggregation, for many entities at once."""
    start = floor_hour(start)
    by_iri = {iri: p for p, iri in iris.items()}
    col = H.observed_at
    if session.get_bind().dialect.name == "postgresql":
        bucket = func.floor((func.extract("epoch", col) - start.timestamp()) / 3600.0)
    else:  # as temporal.aggregate: julianday() of the stored text; the small term guards 1.9999999 hours
        j0 = start.timestamp() / 86400.0 + 2440587.5
        bucket = sql_cast((func.julianday(col) - j0) * 24.0 + 1e-7, Integer)
    bucket = bucket.label("bucket")
    out: dict[str, dict[str, dict[datetime, float]]] = {}
    if tenant_id < 0 or not entity_ids:
        return out
    for i in range(0, len(entity_ids), CHUNK):
        ids = list(entity_ids[i:i + CHUNK])
        stmt = (select(H.entity_id, H.attr, bucket, func.avg(H.num))
                .where(H.tenant_id == tenant_id, H.entity_id.in_(ids), H.attr.in_(list(by_iri)),
                       H.dataset_id.is_(None), col.is_not(None), col >= start, col < end,
                       H.num.is_not(None), H.num >= 0, H.num <= aqi.MAX_CONCENTRATION)
                .group_by(H.entity_id, H.attr, bucket))
        for eid, attr, b, mean in session.execute(stmt):
            hour = start + int(b) * HOUR
            out.setdefault(eid, {}).setdefault(by_iri[attr], {})[hour] = float(mean)
    return out


def o3_8h(o3: Mapping[datetime, float], end_hour: datetime) -> float | None:
    """The O3 8-hour moving mean of the 8 hours ending with the hour starting `end_hour` (that hour and the 7
    before it); None with fewer than 6 hourly values (GB 3095 Table 4)."""
    values = [o3[end_hour - k * HOUR] for k in range(8) if end_hour - k * HOUR in o3]
    return sum(values) / len(values) if len(values) >= MIN_HOURS_PER_8H else None


@dataclass(frozen=True)
class HourStat:
    """One hour of a station: its hourly values, the O3 8-hour moving mean ending with it, and the hourly AQI."""

    hour: datetime  # start, UTC
    values: dict[str, float]
    o3_8h: float | None
    result: AqiResult | None


@dataclass(frozen=True)
class DayStat:
    """One day (China time) of a station: valid daily statistics, hour counts, and the daily AQI."""

    day: date
    hours: dict[str, int]  # pollutant → hourly values in the day
    means: dict[str, float]  # 24-hour means that are valid (≥ 20 hours)
    o3_8h_max: float | None  # daily maximum 8-hour mean, when valid
    o3_8h_count: int  # valid 8-hour means ending 8:00 … 24:00
    o3_1h_max: float | None  # daily maximum 1-hour O3 (used by HJ 633—2012 daily reports), when ≥ 20 hours
    result: AqiResult | None

    def concentrations(self) -> dict[str, float]:
        out = dict(self.means)
        if self.o3_8h_max is not None:
            out["o3_8h"] = self.o3_8h_max
        if self.o3_1h_max is not None and self.result is not None and self.result.edition == "2012":
            out["o3"] = self.o3_1h_max
        return out


def hour_stat(series: Mapping[str, Mapping[datetime, float]], hour: datetime, *, tz: Any) -> HourStat:
    """The hourly (real-time) AQI of one hour, with the O3 8-hour moving mean the report asks for (HJ 633)."""
    values = {p: series[p][hour] for p in POLLUTANTS if hour in series.get(p, {})}
    m8 = o3_8h(series.get("o3", {}), hour)
    items = dict(values)
    if m8 is not None:
        items["o3_8h"] = m8
    edition = aqi.edition_for(hour.astimezone(tz).date())
    result = aqi.compute(items, edition=edition, period="hourly") if items else None
    return HourStat(hour=hour, values=values, o3_8h=m8, result=result)


def day_stat(series: Mapping[str, Mapping[datetime, float]], day: date, *, tz: Any) -> DayStat:
    """A day's statistics under GB 3095 / HJ 663 validity rules and its daily AQI (HJ 633, edition by date)."""
    first = datetime(day.year, day.month, day.day, tzinfo=tz).astimezone(UTC)
    hours = [first + k * HOUR for k in range(24)]
    counts: dict[str, int] = {}
    means: dict[str, float] = {}
    for p in POLLUTANTS:
        got = [series.get(p, {})[h] for h in hours if h in series.get(p, {})]
        counts[p] = len(got)
        if p in DAILY_MEAN_ITEMS and len(got) >= MIN_HOURS_PER_DAY:
            means[p] = sum(got) / len(got)
    o3 = series.get("o3", {})
    # the 8-hour means ending 8:00 … 24:00: those whose last hour starts 7:00 … 23:00
    windows = [o3_8h(o3, first + k * HOUR) for k in range(FIRST_8H_END - 1, 24)]
    valid = [w for w in windows if w is not None]
    top = max(valid) if valid else None
    o3_8h_max = top if top is not None and (len(valid) >= MIN_8H_PER_DAY or top > O3_8H_LIMIT) else None
    o3_hours = [o3[h] for h in hours if h in o3]
    o3_1h_max = max(o3_hours) if len(o3_hours) >= MIN_HOURS_PER_DAY else None
    edition = aqi.edition_for(day)
    items: dict[str, float] = dict(means)
    if o3_8h_max is not None:
        items["o3_8h"] = o3_8h_max
    if o3_1h_max is not None and edition == "2012":
        items["o3"] = o3_1h_max
    result = aqi.compute(items, edition=edition, period="daily") if items else None
    return DayStat(day=day, hours=counts, means=means, o3_8h_max=o3_8h_max, o3_8h_count=len(valid),
                   o3_1h_max=o3_1h_max, result=result)


def hours_range(last_hour: datetime, count: int) -> list[datetime]:
    """`count` hour starts ending with `last_hour`, oldest first."""
    return [last_hour - k * HOUR for k in range(count - 1, -1, -1)]


def days_range(last_day: date, count: int) -> list[date]:
    return [last_day - timedelta(days=k) for k in range(count - 1, -1, -1)]


def merge(series: Iterable[Mapping[str, Mapping[datetime, float]]]) -> dict[str, dict[datetime, float]]:
    out: dict[str, dict[datetime, float]] = {}
    for s in series:
        for p, hours in s.items():
            out.setdefault(p, {}).update(hours)
    return out
