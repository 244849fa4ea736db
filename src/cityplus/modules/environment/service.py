"""The environment module's public interface: the AQI calculator and the air-quality monitoring network.

Stations are `AirQualityObserved` entities (FIWARE Smart Data Models) in the context broker, one per station,
holding the station's latest hourly concentrations (as the device gateway writes them). This module reads them
through the broker's in-process service, computes the real-time AQI per station, district (区) and city, and writes
each station's index back onto its entity.
"""

from __future__ import annotations

import re
import time
import weakref
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from cityplus.core import audit
from cityplus.core.audit import Actor
from cityplus.core.errors import NotFound, Unprocessable
from cityplus.modules.context import jsonld, temporal
from cityplus.modules.context import service as context
from cityplus.modules.context.models import ContextEntity, ContextEntityType
from cityplus.modules.environment import aqi, history, weather
from cityplus.modules.environment.aqi import AqiInputError, AqiResult, Edition

CST = timezone(timedelta(hours=8))  # China Standard Time: the day an edition applies to
STATION_TYPE = "AirQualityObserved"
STATION_POLLUTANTS = ("so2", "no2", "co", "o3", "pm10", "pm25")  # what the stations measure (hourly means)
STALE_AFTER = timedelta(hours=3)  # a station whose newest value is older is "not current" and left out of aggregates
PAGE = 1000
CITY_NAME = {"zh": "成都市", "en": "Chengdu"}
NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")
BACKGROUND = "background"  # monitoringPointType of control points (对照点), not part of the city's assessment


# --- the calculator ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EditionChoice:
    """The edition a calculation used and why: asked for, or chosen by the date the data belongs to."""

    edition: Edition
    source: str  # "requested" | "date"
    day: date | None


def choose_edition(edition: str | None, day: date | None = None, *, now: datetime | None = None) -> EditionChoice:
    """The requested edition, else the one in force on `day` (today in China when none is given)."""
    if edition is not None:
        if edition not in aqi.EDITIONS:
            raise AqiInputError("edition", f"unknown edition {edition!r}; use 2026 or 2012")
        return EditionChoice(edition, "requested", day)  # type: ignore[arg-type]
    day = day or (now or datetime.now(UTC)).astimezone(CST).date()
    return EditionChoice(aqi.edition_for(day), "date", day)


def parse_concentration(field: str, raw: str | None) -> float | None:
    """A concentration from a query string or form: empty means not given; otherwise a finite number ≥ 0."""
    if raw is None or not raw.strip():
        return None
    if not NUMBER.fullmatch(raw.strip()):  # plain decimals only: float() would also take 1_000, nan, inf
        raise AqiInputError(field, f"{raw[:32]!r} is not a number")
    value = float(raw.strip())
    try:
        return aqi.check_concentration("so2" if field == "so2_24h" else field, value)
    except AqiInputError as exc:
        raise AqiInputError(field, exc.message) from None


def calculate(concentrations: Mapping[str, float | None], *, edition: str | None, period: str,
              day: date | None = None, so2_24h: float | None = None) -> tuple[EditionChoice, AqiResult]:
    """The calculator: choose the edition (or take the requested one) and compute. Raises Unprocessable."""
    try:
        choice = choose_edition(edition, day)
        if period not in aqi.PERIODS:
            raise AqiInputError("period", f"unknown period {period!r}; use hourly or daily")
        result = aqi.compute({k: v for k, v in concentrations.items() if v is not None}, edition=choice.edition,
                             period=period, so2_24h=so2_24h)  # type: ignore[arg-type]
    except AqiInputError as exc:
        raise invalid(exc) from None
    return choice, result


def invalid(exc: AqiInputError) -> Unprocessable:
    return Unprocessable(str(exc), errors=[{"field": exc.field, "message": exc.message}])


# --- the monitoring network ----------------------------------------------------------------------------


@dataclass(frozen=True)
class StationAqi:
    """Real-time AQI of one station from its latest values."""

    entity_id: str
    name: str
    name_en: str
    district: str
    point_type: str  # urban | background
    location: tuple[float, float] | None  # lon, lat
    observed_at: datetime | None
    current: bool  # observed within STALE_AFTER of now
    concentrations: dict[str, float]
    result: AqiResult | None  # None when the station has no usable value
    written: tuple[Any, ...] | None = None  # the index last written onto the entity (see index_key)


@dataclass(frozen=True)
class AreaAqi:
    """Real-time AQI of a district or the city from the mean concentrations of its current stations."""

    name: str
    stations_total: int
    stations_used: int
    concentrations: dict[str, float]
    result: AqiResult | None


@dataclass(frozen=True)
class NetworkAqi:
    """The whole network at one moment: stations, districts and the city."""

    computed_at: datetime
    edition: Edition
    stations: list[StationAqi]
    districts: list[AreaAqi]
    city: AreaAqi


def _terms(active: jsonld.ActiveContext) -> dict[str, str]:
    names = (*STATION_POLLUTANTS, "name", "alternateName", "areaServed", "location", "dateObserved",
             "monitoringPointType", "airQualityIndex", "airQualityLevel", "primaryPollutant", "standard")
    return {n: active.expand_term(n) for n in names}


def _default_instance(attr: Any) -> dict[str, Any] | None:
    for inst in context.instances(attr):
        if isinstance(inst, dict) and "datasetId" not in inst:
            return inst
    return None


def _value(attrs: Mapping[str, Any], iri: str) -> Any:
    inst = _default_instance(attrs.get(iri)) if iri in attrs else None
    if inst is None:
        return None
    return inst.get("value", inst.get("@value"))


def _when(text: Any) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def read_stations(session: Session, active: jsonld.ActiveContext, *, tenant: str | None = None
                  ) -> list[tuple[str, dict[str, Any]]]:
    """Every AirQualityObserved entity of the tenant as (id, expanded attributes), in storage order."""
    query = context.EntityQuery(types=context.TypeExpr(((active.expand_term(STATION_TYPE),),)), limit=PAGE)
    out: list[tuple[str, dict[str, Any]]] = []
    while True:
        page, _ = context.query_entities(session, tenant, query)
        out.extend((e.entity_id, e.attrs) for e in page)
        if len(page) < PAGE:
            return out
        query.offset += PAGE


def station_aqi(entity_id: str, attrs: Mapping[str, Any], terms: Mapping[str, str], *, now: datetime,
                edition: Edition | None = None) -> StationAqi:
    """Real-time (hourly) AQI of one station from its expanded attributes, with `edition` or else the edition in
    force on the day (China time) of its newest value."""
    concentrations: dict[str, float] = {}
    observed: list[datetime] = []
    for p in STATION_POLLUTANTS:
        inst = _default_instance(attrs[terms[p]]) if terms[p] in attrs else None
        if inst is None:
            continue
        v = inst.get("value")
        if isinstance(v, bool) or not isinstance(v, int | float) or v != v or v < 0 or v > aqi.MAX_CONCENTRATION:
            continue  # a broken reading never makes an index (the gateway files such messages as dead letters)
        concentrations[p] = float(v)
        when = _when(inst.get("observedAt"))
        if when is not None:
            observed.append(when)
    at = max(observed) if observed else _when(_value(attrs, terms["dateObserved"]))
    if edition is None:
        edition = aqi.edition_for((at or now).astimezone(CST).date())
    result = aqi.compute(concentrations, edition=edition, period="hourly") if concentrations else None
    loc = _value(attrs, terms["location"])
    point = None
    if isinstance(loc, dict) and loc.get("type") == "Point" and isinstance(loc.get("coordinates"), list):
        lon, lat = loc["coordinates"][:2]
        point = (float(lon), float(lat))
    name = _value(attrs, terms["name"])
    written = None
    index = _default_instance(attrs[terms["airQualityIndex"]]) if terms["airQualityIndex"] in attrs else None
    if index is not None:
        standard = index.get(terms["standard"])
        written = (index.get("value"), index.get("observedAt"),
                   standard.get("value") if isinstance(standard, dict) else None,
                   _value(attrs, terms["primaryPollutant"]))
    return StationAqi(
        entity_id=entity_id, name=str(name) if name else entity_id,
        name_en=str(_value(attrs, terms["alternateName"]) or name or entity_id),
        district=str(_value(attrs, terms["areaServed"]) or ""),
        point_type=str(_value(attrs, terms["monitoringPointType"]) or "urban"), location=point, observed_at=at,
        current=at is not None and now - STALE_AFTER <= at <= now + timedelta(minutes=10),
        concentrations=concentrations, result=result, written=written)


def aggregate(name: str, stations: Sequence[StationAqi], *, edition: Edition) -> AreaAqi:
    """AQI of an area: per pollutant, the arithmetic mean over its current stations (HJ 663—2013), then HJ 633."""
    used = [s for s in stations if s.current and s.concentrations]
    means: dict[str, float] = {}
    for p in (*STATION_POLLUTANTS, "o3_8h"):
        values = [s.concentrations[p] for s in used if p in s.concentrations]
        if values:
            means[p] = sum(values) / len(values)
    result = aqi.compute(means, edition=edition, period="hourly") if means else None
    return AreaAqi(name=name, stations_total=len(stations), stations_used=len(used), concentrations=means,
                   result=result)


def network_aqi(session: Session, active: jsonld.ActiveContext, *, tenant: str | None = None,
                now: datetime | None = None) -> NetworkAqi:
    """Current real-time AQI of every station, of each district and of the city (urban stations only)."""
    now = now or datetime.now(UTC)
    edition = aqi.edition_for(now.astimezone(CST).date())
    terms = _terms(active)
    stations = [station_aqi(eid, attrs, terms, now=now) for eid, attrs in read_stations(session, active, tenant=tenant)]
    stations = with_o3_8h(session, active, stations, tenant=tenant, now=now)
    return _network(stations, now, edition)


# --- cache of the public read routes ----------------------------------------------------------------------

CACHE_SECONDS = 60.0  # at most this old: bounds what no version sees (time passing, history-only writes, races)
_CACHE: weakref.WeakKeyDictionary[Engine, dict[str, tuple[tuple[Any, ...], float, NetworkAqi]]] = \
    weakref.WeakKeyDictionary()


def network_version(session: Session, active: jsonld.ActiveContext, *, tenant: str | None = None
                    ) -> tuple[Any, ...]:
    """What changes whenever a station entity is created, written or deleted, in any process: the tenant's number
    of station entities and their latest modification time (one query on the broker's type index)."""
    tid = _tenant_id(session, tenant)
    row = session.execute(
        select(func.count(ContextEntity.pk), func.max(ContextEntity.modified_at))
        .join(ContextEntityType, ContextEntityType.entity_pk == ContextEntity.pk)
        .where(ContextEntityType.tenant_id == tid, ContextEntityType.type == active.expand_term(STATION_TYPE))).one()
    return (tid, int(row[0] or 0), row[1].isoformat() if row[1] is not None else None)


def cached_network(session: Session, active: jsonld.ActiveContext, *, tenant: str | None = None) -> NetworkAqi:
    """network_aqi() for the public read routes, kept per process and database until a station entity changes
    (network_version differs: any process's write, the write-back included) or it is CACHE_SECONDS old."""
    bind = session.get_bind()
    engine = bind if isinstance(bind, Engine) else bind.engine
    version = network_version(session, active, tenant=tenant)
    per_db = _CACHE.setdefault(engine, {})
    hit = per_db.get(tenant or "")
    if hit is not None and hit[0] == version and time.monotonic() - hit[1] < CACHE_SECONDS:
        return hit[2]
    network = network_aqi(session, active, tenant=tenant)
    per_db[tenant or ""] = (version, time.monotonic(), network)
    return network


def _tenant_id(session: Session, tenant: str | None) -> int:
    return context.tenant(session, tenant, create=False).id


def with_o3_8h(session: Session, active: jsonld.ActiveContext, stations: list[StationAqi], *,
               tenant: str | None = None, now: datetime) -> list[StationAqi]:
    """Each station's O3 8-hour moving mean (the 8 hours ending with the hour of its newest value, at least 6
    hourly values: GB 3095 Table 4) from the broker's history, added to its items and its real-time AQI as HJ 633's
    hourly report asks. One grouped query for the whole network."""
    wanted = [s for s in stations if s.observed_at is not None and s.result is not None]
    if not wanted:
        return stations
    last = max(history.floor_hour(s.observed_at) for s in wanted if s.observed_at)
    first = min(history.floor_hour(s.observed_at) for s in wanted if s.observed_at) - 7 * history.HOUR
    if last - first > timedelta(days=2):  # a long-stale station needs no 8-hour mean: it is not current anyway
        first = last - timedelta(days=2)
    means = history.hourly_means(session, _tenant_id(session, tenant), [s.entity_id for s in wanted],
                                 {"o3": active.expand_term("o3")}, first, last + history.HOUR)
    out = []
    for s in stations:
        o3 = means.get(s.entity_id, {}).get("o3")
        m8 = history.o3_8h(o3, history.floor_hour(s.observed_at)) if o3 and s.observed_at else None
        if m8 is None or s.result is None:
            out.append(s)
            continue
        items = {**s.concentrations, "o3_8h": m8}
        out.append(replace(s, concentrations=items,
                           result=aqi.compute(items, edition=s.result.edition, period="hourly")))
    return out


def distinct_sites(stations: Sequence[StationAqi]) -> list[StationAqi]:
    """One entry per site (name and district): a site reported by two entities — the demo stations and the device
    gateway's simulated fleet share six sites — counts once in aggregates, with its newest current values, and as
    a control point if either entity says so."""
    by_site: dict[tuple[str, str], list[StationAqi]] = {}
    for s in stations:
        by_site.setdefault((s.name, s.district), []).append(s)
    out = []
    for group in by_site.values():
        best = max(group, key=lambda s: (s.current, s.observed_at or datetime.min.replace(tzinfo=UTC)))
        if best.point_type != BACKGROUND and any(s.point_type == BACKGROUND for s in group):
            best = replace(best, point_type=BACKGROUND)
        out.append(best)
    return out


def _network(stations: list[StationAqi], now: datetime, edition: Edition) -> NetworkAqi:
    sites = distinct_sites(stations)
    by_district: dict[str, list[StationAqi]] = {}
    for s in sites:
        by_district.setdefault(s.district or "—", []).append(s)
    districts = [aggregate(d, group, edition=edition) for d, group in sorted(by_district.items())]
    city = aggregate(CITY_NAME["zh"], [s for s in sites if s.point_type != BACKGROUND], edition=edition)
    return NetworkAqi(computed_at=now, edition=edition, stations=stations, districts=districts, city=city)


def get_station(network: NetworkAqi, entity_id: str) -> StationAqi:
    for s in network.stations:
        if s.entity_id == entity_id:
            return s
    raise NotFound(f"no air-quality station {entity_id}")


def get_district(network: NetworkAqi, name: str) -> AreaAqi:
    for d in network.districts:
        if d.name == name:
            return d
    raise NotFound(f"no air-quality stations in district {name!r}")


@dataclass(frozen=True)
class StationHistory:
    """A station's last hours (hourly values, O3 8-hour mean, hourly AQI) and last days (daily statistics under
    GB 3095's validity rules, daily AQI), both oldest first."""

    station: StationAqi
    hourly: list[history.HourStat]
    daily: list[history.DayStat]


def station_history(session: Session, active: jsonld.ActiveContext, entity_id: str, *, tenant: str | None = None,
                    now: datetime | None = None, hours: int = 24, days: int = 30) -> StationHistory:
    """One station's hourly (last `hours`, ending with the current hour) and daily (last `days`, ending today in
    China time) statistics from the broker's temporal history. NotFound for an unknown station."""
    now = now or datetime.now(UTC)
    try:
        ent = context.get_entity(session, tenant, entity_id)
    except context.ResourceNotFound:
        raise NotFound(f"no air-quality station {entity_id}") from None
    if active.expand_term(STATION_TYPE) not in (ent.types or []):
        raise NotFound(f"no air-quality station {entity_id}")
    station = station_aqi(entity_id, ent.attrs, _terms(active), now=now)
    station = with_o3_8h(session, active, [station], tenant=tenant, now=now)[0]
    last_hour = history.floor_hour(now)
    hour_list = history.hours_range(last_hour, hours)
    today = now.astimezone(CST).date()
    day_list = history.days_range(today, days)
    first_day = datetime(day_list[0].year, day_list[0].month, day_list[0].day, tzinfo=CST).astimezone(UTC)
    start = min(first_day, hour_list[0] - 7 * history.HOUR)
    iris = {p: active.expand_term(p) for p in history.POLLUTANTS}
    series = history.hourly_means(session, _tenant_id(session, tenant), [entity_id], iris, start,
                                  last_hour + history.HOUR).get(entity_id, {})
    return StationHistory(station=station,
                          hourly=[history.hour_stat(series, h, tz=CST) for h in hour_list],
                          daily=[history.day_stat(series, d, tz=CST) for d in day_list])


DAILY_ITEMS = ("so2", "no2", "co", "o3_8h", "pm10", "pm25", "o3")  # o3: daily maximum 1-hour, 2012 reports only
MAX_DAYS_BACK = 366


@dataclass(frozen=True)
class NetworkDay:
    """The daily report of one day (China time): each station's valid daily statistics and daily AQI, and each
    district's and the city's from the mean of their stations' valid daily values."""

    day: date
    edition: Edition
    stations: list[tuple[StationAqi, history.DayStat]]
    districts: list[AreaAqi]
    city: AreaAqi


def _area_day(name: str, group: Sequence[tuple[StationAqi, history.DayStat]], edition: Edition) -> AreaAqi:
    means: dict[str, float] = {}
    for p in DAILY_ITEMS:
        values = [v for _s, d in group if (v := d.concentrations().get(p)) is not None]
        if values and (p != "o3" or edition == "2012"):
            means[p] = sum(values) / len(values)
    used = sum(1 for _s, d in group if d.result is not None)
    result = aqi.compute(means, edition=edition, period="daily") if means else None
    return AreaAqi(name=name, stations_total=len(group), stations_used=used, concentrations=means, result=result)


def network_day(session: Session, active: jsonld.ActiveContext, day: date, *, tenant: str | None = None,
                now: datetime | None = None) -> NetworkDay:
    """Daily statistics of every station for `day` from the broker's history (one grouped query), under GB 3095's
    validity rules, and the daily AQI of each station, district and the city (urban stations; per item the
    mean of the stations' valid daily values, as HJ 663 assesses a city; HJ 633 daily report, edition by date).
    Unprocessable for a day in the future or more than a year back."""
    now = now or datetime.now(UTC)
    today = now.astimezone(CST).date()
    if day > today or (today - day).days > MAX_DAYS_BACK:
        raise Unprocessable(f"no daily report for {day.isoformat()}",
                            errors=[{"field": "date", "message": f"choose a day from {MAX_DAYS_BACK} days ago "
                                                                 "up to today (China time)"}])
    edition = aqi.edition_for(day)
    terms = _terms(active)
    stations = distinct_sites([station_aqi(eid, attrs, terms, now=now)
                               for eid, attrs in read_stations(session, active, tenant=tenant)])
    first = datetime(day.year, day.month, day.day, tzinfo=CST).astimezone(UTC)
    iris = {p: active.expand_term(p) for p in history.POLLUTANTS}
    series = history.hourly_means(session, _tenant_id(session, tenant), [s.entity_id for s in stations], iris,
                                  first, first + history.DAY)
    rows = [(s, history.day_stat(series.get(s.entity_id, {}), day, tz=CST)) for s in stations]
    by_district: dict[str, list[tuple[StationAqi, history.DayStat]]] = {}
    for row in rows:
        by_district.setdefault(row[0].district or "—", []).append(row)
    districts = [_area_day(d, group, edition) for d, group in sorted(by_district.items())]
    city = _area_day(CITY_NAME["zh"], [r for r in rows if r[0].point_type != BACKGROUND], edition)
    return NetworkDay(day=day, edition=edition, stations=rows, districts=districts, city=city)


INDEX_ATTRS = ("airQualityIndex", "airQualityLevel", "primaryPollutant", "standard", "period")


def index_fragment(s: StationAqi) -> dict[str, Any] | None:
    """The compact NGSI-LD fragment that records a station's computed index on its entity (None: no index)."""
    if s.result is None or s.result.aqi is None or s.result.category is None:
        return None
    observed = (s.observed_at or datetime.now(UTC)).astimezone(UTC).isoformat().replace("+00:00", "Z")
    return {
        "id": s.entity_id, "type": STATION_TYPE,
        "airQualityIndex": {"type": "Property", "value": s.result.aqi, "observedAt": observed,
                            "standard": {"type": "Property", "value": f"HJ 633—{s.result.edition}"},
                            "period": {"type": "Property", "value": "hourly"}},
        "airQualityLevel": {"type": "Property", "value": s.result.category.category_key, "observedAt": observed},
        "primaryPollutant": {"type": "Property", "value": list(s.result.primary_pollutants) or ["none"],
                             "observedAt": observed},
    }


def expanded_index_fragment(s: StationAqi, names: Mapping[str, str]) -> dict[str, Any] | None:
    """index_fragment() already expanded, as `context.expand_compact` would give it: the fragment is ours and
    always valid, and its few names are expanded once per batch (`names`: term → IRI, for INDEX_ATTRS and the
    type) instead of validating and walking a thousand fragments."""
    f = index_fragment(s)
    if f is None:
        return None
    out: dict[str, Any] = {"id": f["id"], "type": [names[STATION_TYPE]]}
    for attr in ("airQualityIndex", "airQualityLevel", "primaryPollutant"):
        out[names[attr]] = {names.get(k, k): v for k, v in f[attr].items()}
    return out


def index_key(s: StationAqi) -> tuple[Any, ...] | None:
    """What index_fragment() would write, in the form StationAqi.written reads it back from the entity."""
    f = index_fragment(s)
    if f is None:
        return None
    return (f["airQualityIndex"]["value"], f["airQualityIndex"]["observedAt"],
            f["airQualityIndex"]["standard"]["value"], f["primaryPollutant"]["value"])


def _write_indexes(session: Session, active: jsonld.ActiveContext, network: NetworkAqi, tenant: str | None
                   ) -> int:
    """Write the index of every station whose index changed since it was last written (an unchanged index is not
    rewritten: no history row, no notification); returns how many were written."""
    names = {n: active.expand_term(n) for n in (*INDEX_ATTRS, STATION_TYPE)}
    changed = [s for s in network.stations if index_key(s) is not None and index_key(s) != s.written]
    fragments = [f for f in (expanded_index_fragment(s, names) for s in changed) if f is not None]
    if fragments:
        res = context.batch_write(session, tenant, "update", fragments)
        if res.errors:  # an entity deleted meanwhile: nothing else is written (the caller's transaction rolls back)
            eid, exc = res.errors[0]
            raise Unprocessable(f"could not write the AQI of {eid}: {exc}")
    return len(fragments)


def recompute(session: Session, active: jsonld.ActiveContext, actor: Actor, *, tenant: str | None = None,
              now: datetime | None = None) -> NetworkAqi:
    """Compute every station's real-time AQI and write it onto its entity (airQualityIndex, airQualityLevel,
    primaryPollutant) where it changed, in one set-based broker batch; audited as one entry."""
    network = network_aqi(session, active, tenant=tenant, now=now)
    written = _write_indexes(session, active, network, tenant)
    audit.append(session, actor, "environment.aqi_recomputed", "air_quality_network", tenant or "default",
                 {"stations": len(network.stations), "written": written,
                  "city_aqi": network.city.result.aqi if network.city.result else None})
    return network


def scheduled_recompute(session: Session, active: jsonld.ActiveContext, actor: Actor, *, tenant: str | None = None,
                        now: datetime | None = None) -> int:
    """The scheduled round (runtime.py): like recompute(), but audited only when an index changed, so an idle
    network does not fill the audit log every few minutes. Returns how many stations' indexes were written."""
    network = network_aqi(session, active, tenant=tenant, now=now)
    written = _write_indexes(session, active, network, tenant)
    if written:
        audit.append(session, actor, "environment.aqi_recomputed", "air_quality_network", tenant or "default",
                     {"stations": len(network.stations), "written": written, "scheduled": True,
                      "city_aqi": network.city.result.aqi if network.city.result else None})
    return written


# --- demo stations -------------------------------------------------------------------------------------


def station_entity(code: str, name_zh: str, name_en: str, district: str, lat: float, lon: float, *,
                   point_type: str, values: Mapping[str, float], observed_at: datetime, provider: str
                   ) -> dict[str, Any]:
    """A compact normalized AirQualityObserved entity for one station with its latest hourly values."""
    obs = observed_at.astimezone(UTC).isoformat().replace("+00:00", "Z")
    units = {"co": "GP"}  # CEFACT: GP mg/m³, GQ µg/m³
    entity: dict[str, Any] = {
        "id": f"urn:ngsi-ld:AirQualityObserved:chengdu-{code}", "type": STATION_TYPE,
        "name": {"type": "Property", "value": name_zh},
        "alternateName": {"type": "Property", "value": name_en},
        "areaServed": {"type": "Property", "value": district},
        "address": {"type": "Property", "value": {"addressCountry": "CN", "addressRegion": "四川省",
                                                   "addressLocality": "成都市", "district": district,
                                                   "type": "PostalAddress"}},
        "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [lon, lat]}},
        "typeOfLocation": {"type": "Property", "value": "outdoor"},
        "monitoringPointType": {"type": "Property", "value": point_type},
        "dataProvider": {"type": "Property", "value": provider},
        "dateObserved": {"type": "Property", "value": obs},
    }
    for p, v in values.items():
        entity[p] = {"type": "Property", "value": v, "unitCode": units.get(p, "GQ"), "observedAt": obs}
    return entity


def upsert_stations(session: Session, active: jsonld.ActiveContext, actor: Actor,
                    entities: Iterable[dict[str, Any]], *, tenant: str | None = None) -> int:
    """Create or update station entities (compact, normalized) in one broker batch; returns how many were new."""
    expanded = [context.expand_compact(e, active) for e in entities]
    res = context.batch_write(session, tenant, "upsert_update", expanded)
    if res.errors:
        eid, exc = res.errors[0]
        raise Unprocessable(f"station {eid} was refused by the context broker: {exc}")
    audit.append(session, actor, "environment.stations_upserted", "air_quality_network", tenant or "default",
                 {"stations": len(expanded), "created": len(res.created)})
    return len(res.created)



def load_history(session: Session, active: jsonld.ActiveContext, actor: Actor,
                 series: Mapping[str, Mapping[str, Mapping[datetime, float]]], *, tenant: str | None = None) -> int:
    """Add past hourly values to station histories (entity → pollutant → observedAt → value) through the broker's
    temporal service, as POST /temporal/entities/{id}/attrs does: an instance at the same observedAt replaces the
    stored one, so loading twice changes nothing. One audit entry; returns the instances added."""
    tid = context.tenant(session, tenant, create=True).id
    units = {"co": "GP"}
    added = 0
    for entity_id, items in series.items():
        attrs = {active.expand_term(p): [{"type": "Property", "value": v, "unitCode": units.get(p, "GQ"),
                                          "observedAt": t.astimezone(UTC).isoformat().replace("+00:00", "Z")}
                                         for t, v in values.items()]
                 for p, values in items.items() if p in STATION_POLLUTANTS}
        added += temporal.add_instances(session, tid, entity_id, [active.expand_term(STATION_TYPE)], attrs)
    audit.append(session, actor, "environment.history_loaded", "air_quality_network", tenant or "default",
                 {"stations": len(series), "instances": added})
    return added


# --- weather warning signals (see weather.py) -------------------------------------------------------------

WarningSpec = weather.WarningSpec
WeatherWarning = weather.WeatherWarning
issue_warning = weather.issue
lift_warning = weather.lift
get_warning = weather.get
list_warnings = weather.list_warnings
