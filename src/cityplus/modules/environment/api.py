"""Environment API: the public AQI calculator and the current AQI of the monitoring network."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request

from cityplus.api.deps import PUBLIC_ROUTE, Ctx, DbSession, Scoped
from cityplus.core.errors import Forbidden, Unprocessable
from cityplus.modules.context import service as context_service
from cityplus.modules.environment import aqi, service
from cityplus.modules.environment.schemas import (
    AqiPublic,
    AreaPublic,
    NetworkDayPublic,
    NetworkPublic,
    StationHistoryPublic,
    StationPublic,
    WarningIn,
    WarningPublic,
    aqi_public,
    area_public,
    history_public,
    network_day_public,
    station_public,
    warning_public,
)

CALCULATOR_PARAMS = frozenset({"edition", "period", "date", "so2_24h", *aqi.POLLUTANTS})
# Who may write indexes onto the network's entities: 市环保局 staff (and platform administrators).
ENVIRONMENT_ORGS = frozenset({"hbj"})

Concentration = Annotated[str | None, Query(max_length=32, description="concentration; empty means not given")]


def calculator_input(params: dict[str, str | None]) -> dict[str, float | None]:
    """Concentrations from query or form fields, each checked (number, finite, ≥ 0). Raises Unprocessable."""
    try:
        return {p: service.parse_concentration(p, params.get(p)) for p in aqi.POLLUTANTS}
    except aqi.AqiInputError as exc:
        raise service.invalid(exc) from None


def router() -> APIRouter:
    r = APIRouter(prefix="/environment", tags=["environment"])

    @r.get("/aqi", response_model=AqiPublic, operation_id="calculate_aqi", dependencies=[PUBLIC_ROUTE])
    def calculate_aqi(
        request: Request,
        edition: Annotated[str | None, Query(max_length=8, description="2026 or 2012; omitted: by date")] = None,
        period: Annotated[str, Query(max_length=8, description="hourly (实时报) or daily (日报)")] = "hourly",
        day: Annotated[date | None, Query(alias="date", description="date the data belongs to (edition choice)")
                       ] = None,
        so2: Concentration = None, no2: Concentration = None, co: Concentration = None, o3: Concentration = None,
        o3_8h: Concentration = None, pm10: Concentration = None, pm25: Concentration = None,
        so2_24h: Annotated[str | None, Query(max_length=32, description="24-hour SO2 (2012 hourly, SO2 > 800)")
                           ] = None,
    ) -> AqiPublic:
        """AQI per HJ 633 from any subset of SO2, NO2, CO (mg/m³), O3, O3 8-hour, PM10, PM2.5 (µg/m³)."""
        unknown = sorted(set(request.query_params) - CALCULATOR_PARAMS)
        if unknown:
            raise Unprocessable(f"unknown parameter {unknown[0]!r}",
                                errors=[{"field": f"query.{u}", "message": "unknown parameter"} for u in unknown])
        values = calculator_input({"so2": so2, "no2": no2, "co": co, "o3": o3, "o3_8h": o3_8h, "pm10": pm10,
                                   "pm25": pm25})
        try:
            extra = service.parse_concentration("so2_24h", so2_24h)
        except aqi.AqiInputError as exc:
            raise service.invalid(exc) from None
        choice, result = service.calculate(values, edition=edition, period=period, day=day, so2_24h=extra)
        return aqi_public(result, choice)

    @r.get("/air", response_model=NetworkPublic, operation_id="get_air_quality_network",
           dependencies=[PUBLIC_ROUTE])
    def get_air_quality_network(session: DbSession, ctx: Ctx) -> NetworkPublic:
        """Current real-time AQI of the city, each district and each station (public)."""
        n = service.cached_network(session, context_service.core_context(ctx))
        return NetworkPublic(computed_at=n.computed_at, standard=f"HJ 633—{n.edition}", city=area_public(n.city),
                             districts=[area_public(d) for d in n.districts],
                             stations=[station_public(s) for s in n.stations])

    @r.get("/air/city", response_model=AreaPublic, operation_id="get_city_aqi", dependencies=[PUBLIC_ROUTE])
    def get_city_aqi(session: DbSession, ctx: Ctx) -> AreaPublic:
        """Current AQI of the city: mean of its current urban stations (HJ 663), then HJ 633 (public)."""
        return area_public(service.cached_network(session, context_service.core_context(ctx)).city)

    @r.get("/air/districts", response_model=list[AreaPublic], operation_id="list_district_aqi",
           dependencies=[PUBLIC_ROUTE])
    def list_district_aqi(session: DbSession, ctx: Ctx) -> list[AreaPublic]:
        """Current AQI of each district with stations (public)."""
        return [area_public(d) for d in service.cached_network(session, context_service.core_context(ctx)).districts]

    @r.get("/air/districts/{district}", response_model=AreaPublic, operation_id="get_district_aqi",
           dependencies=[PUBLIC_ROUTE])
    def get_district_aqi(district: Annotated[str, Path(max_length=64)], session: DbSession, ctx: Ctx
                         ) -> AreaPublic:
        """Current AQI of one district, by its Chinese name, e.g. 武侯区 (public)."""
        n = service.cached_network(session, context_service.core_context(ctx))
        return area_public(service.get_district(n, district))

    @r.get("/air/stations", response_model=list[StationPublic], operation_id="list_station_aqi",
           dependencies=[PUBLIC_ROUTE])
    def list_station_aqi(session: DbSession, ctx: Ctx) -> list[StationPublic]:
        """Current AQI of each station (public)."""
        return [station_public(s) for s in service.cached_network(session, context_service.core_context(ctx)).stations]

    @r.get("/air/stations/{station_id}", response_model=StationPublic, operation_id="get_station_aqi",
           dependencies=[PUBLIC_ROUTE])
    def get_station_aqi(station_id: Annotated[str, Path(max_length=256)], session: DbSession, ctx: Ctx
                        ) -> StationPublic:
        """Current AQI of one station by its entity id (public)."""
        n = service.cached_network(session, context_service.core_context(ctx))
        return station_public(service.get_station(n, station_id))

    @r.get("/air/daily", response_model=NetworkDayPublic, operation_id="get_daily_air_quality",
           dependencies=[PUBLIC_ROUTE])
    def get_daily_air_quality(session: DbSession, ctx: Ctx, day: Annotated[date | None, Query(
            alias="date", description="the day in China time; default yesterday")] = None) -> NetworkDayPublic:
        """The daily report of a day: each station's, district's and the city's daily AQI (public)."""
        now = datetime.now(UTC)
        day = day or now.astimezone(service.CST).date() - timedelta(days=1)
        return network_day_public(service.network_day(session, context_service.core_context(ctx), day, now=now))

    @r.get("/air/stations/{station_id}/history", response_model=StationHistoryPublic,
           operation_id="get_station_history", dependencies=[PUBLIC_ROUTE])
    def get_station_history(station_id: Annotated[str, Path(max_length=256)], session: DbSession, ctx: Ctx
                            ) -> StationHistoryPublic:
        """A station's last 24 hours and 30 days: values, O3 8-hour means, hourly and daily AQI (public)."""
        return history_public(service.station_history(session, context_service.core_context(ctx), station_id))

    @r.post("/air/recompute", response_model=AreaPublic, operation_id="recompute_aqi")
    def recompute_aqi(principal: Scoped("environment.manage"), session: DbSession, ctx: Ctx) -> AreaPublic:
        """Compute every station's AQI and write it onto its entity; answers the city's AQI (市环保局 staff)."""
        actor = principal.actor
        if actor.role != "platform_admin" and actor.org_code not in ENVIRONMENT_ORGS:
            raise Forbidden("only staff of 市环保局 (hbj) recompute the network's AQI",
                            errors=[{"field": "org", "message": f"{actor.org_code} is not an environment authority"}])
        return area_public(service.recompute(session, context_service.core_context(ctx), actor).city)

    @r.post("/warnings", response_model=WarningPublic, status_code=201, operation_id="issue_weather_warning")
    def issue_weather_warning(body: WarningIn, principal: Scoped("environment.warn"), session: DbSession,
                              ctx: Ctx) -> WarningPublic:
        """Issue a weather warning signal (暴雨 blue–red, 高温 yellow–red) as a WeatherAlert entity (市气象局)."""
        spec = service.WarningSpec(signal=body.signal, level=body.level, area_name=body.area_name, area=body.area,
                                   valid_from=body.valid_from, valid_to=body.valid_to, guidance_zh=body.guidance_zh,
                                   guidance_en=body.guidance_en)
        w = service.issue_warning(session, context_service.core_context(ctx), principal.actor, spec)
        return warning_public(w, datetime.now(UTC))

    @r.get("/warnings", response_model=list[WarningPublic], operation_id="list_weather_warnings",
           dependencies=[PUBLIC_ROUTE])
    def list_weather_warnings(session: DbSession, ctx: Ctx, all: Annotated[bool, Query(  # noqa: A002
            description="also lifted and expired ones")] = False) -> list[WarningPublic]:
        """Weather warning signals in force now, newest first (public)."""
        now = datetime.now(UTC)
        return [warning_public(w, now) for w in service.list_warnings(
            session, context_service.core_context(ctx), in_force_only=not all, now=now)]

    @r.get("/warnings/{warning_id}", response_model=WarningPublic, operation_id="get_weather_warning",
           dependencies=[PUBLIC_ROUTE])
    def get_weather_warning(warning_id: Annotated[str, Path(max_length=256)], session: DbSession, ctx: Ctx
                            ) -> WarningPublic:
        """One warning signal by its entity id (public)."""
        return warning_public(service.get_warning(session, context_service.core_context(ctx), warning_id),
                              datetime.now(UTC))

    @r.post("/warnings/{warning_id}/lift", response_model=WarningPublic, operation_id="lift_weather_warning")
    def lift_weather_warning(warning_id: Annotated[str, Path(max_length=256)], principal: Scoped("environment.warn"),
                             session: DbSession, ctx: Ctx) -> WarningPublic:
        """Lift (解除) a warning signal now (市气象局)."""
        w = service.lift_warning(session, context_service.core_context(ctx), principal.actor, warning_id)
        return warning_public(w, datetime.now(UTC))

    return r
