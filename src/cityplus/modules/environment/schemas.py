"""Response models of the environment API."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, Field

from cityplus.api.schemas import Localized, StrictModel
from cityplus.modules.environment import aqi
from cityplus.modules.environment.history import DayStat, HourStat
from cityplus.modules.environment.service import AreaAqi, EditionChoice, NetworkDay, StationAqi, StationHistory
from cityplus.modules.environment.weather import WeatherWarning


class SubIndexPublic(BaseModel):
    pollutant: str
    unit: str
    averaging: str = Field(description="1h, 8h or 24h: the breakpoint column used")
    concentration: float = Field(description="as given")
    used: float | None = Field(description="after the edition's input rounding (2026 daily: integers, CO 0.1)")
    iaqi: int | None = Field(description="null when the edition computes none from this value (see note)")
    note: str | None = Field(None, description="footnote applied: so2_1h_above_800, o3_8h_above_800, above_scale")


class LevelPublic(BaseModel):
    level: int = Field(description="1–6")
    level_zh: str = Field(description="一级 … 六级")
    category: Localized
    category_key: str
    colour: Localized
    colour_hex: str
    rgb: list[int]


class AqiPublic(BaseModel):
    standard: str = Field(description="HJ 633—2026 or HJ 633—2012")
    edition: str
    edition_source: str = Field(description="requested, or date: chosen by the date (2026 from 2026-03-01)")
    date: dt.date | None = Field(None, description="the date that chose the edition (when not requested)")
    period: str
    aqi: int | None
    level: LevelPublic | None
    primary_pollutants: list[str] = Field(description="首要污染物: the largest IAQI when AQI > 50")
    exceeding_pollutants: list[str] | None = Field(description="超标污染物, IAQI > 100 (HJ 633—2012 only)")
    sub_indices: list[SubIndexPublic]


class PointPublic(BaseModel):
    lon: float
    lat: float


class StationPublic(BaseModel):
    id: str
    name: Localized
    district: str
    point_type: str = Field(description="urban (城市评价点) or background (对照点, not in the city's mean)")
    location: PointPublic | None
    observed_at: dt.datetime | None
    current: bool = Field(description="observed within the last 3 hours; only current stations are aggregated")
    concentrations: dict[str, float]
    aqi: AqiPublic | None


class AreaPublic(BaseModel):
    name: str
    stations_total: int
    stations_used: int
    concentrations: dict[str, float] = Field(description="mean over the current stations, per pollutant")
    aqi: AqiPublic | None


class NetworkPublic(BaseModel):
    computed_at: dt.datetime
    standard: str
    city: AreaPublic
    districts: list[AreaPublic]
    stations: list[StationPublic]


class HourPublic(BaseModel):
    hour: dt.datetime = Field(description="start of the hour (the hour's values were observed within it)")
    concentrations: dict[str, float] = Field(description="hourly values; o3_8h the 8-hour moving mean ending "
                                                         "with this hour (at least 6 hourly values)")
    aqi: int | None
    category_key: str | None
    primary_pollutants: list[str]
    standard: str | None


class DayPublic(BaseModel):
    date: dt.date = Field(description="the day in China time")
    hours: dict[str, int] = Field(description="hourly values the day has, per pollutant")
    concentrations: dict[str, float] = Field(description="valid daily statistics only: 24-hour means (at least "
                                                         "20 hours), o3_8h the daily maximum 8-hour mean")
    o3_8h_count: int = Field(description="valid 8-hour O3 means ending 8:00 … 24:00 (14 needed)")
    aqi: int | None
    category_key: str | None
    primary_pollutants: list[str]
    standard: str | None


class StationHistoryPublic(BaseModel):
    station: StationPublic
    hourly: list[HourPublic] = Field(description="the last 24 hours, oldest first")
    daily: list[DayPublic] = Field(description="the last 30 days ending today, oldest first")


class StationDayPublic(BaseModel):
    id: str
    name: Localized
    district: str
    point_type: str
    day: DayPublic


class NetworkDayPublic(BaseModel):
    date: dt.date
    standard: str
    city: AreaPublic = Field(description="urban stations; per item the mean of their valid daily values")
    districts: list[AreaPublic]
    stations: list[StationDayPublic] = Field(description="one per site")


def network_day_public(n: NetworkDay) -> NetworkDayPublic:
    return NetworkDayPublic(
        date=n.day, standard=f"HJ 633—{n.edition}", city=area_public(n.city),
        districts=[area_public(d) for d in n.districts],
        stations=[StationDayPublic(id=s.entity_id, name=Localized(zh=s.name, en=s.name_en), district=s.district,
                                   point_type=s.point_type, day=day_public(d)) for s, d in n.stations])


def hour_public(h: HourStat) -> HourPublic:
    r = h.result
    values = dict(h.values) | ({"o3_8h": h.o3_8h} if h.o3_8h is not None else {})
    return HourPublic(hour=h.hour, concentrations=values, aqi=r.aqi if r else None,
                      category_key=r.category.category_key if r and r.category else None,
                      primary_pollutants=list(r.primary_pollutants) if r else [],
                      standard=f"HJ 633—{r.edition}" if r else None)


def day_public(d: DayStat) -> DayPublic:
    r = d.result
    return DayPublic(date=d.day, hours=d.hours, concentrations=d.concentrations(), o3_8h_count=d.o3_8h_count,
                     aqi=r.aqi if r else None, category_key=r.category.category_key if r and r.category else None,
                     primary_pollutants=list(r.primary_pollutants) if r else [],
                     standard=f"HJ 633—{r.edition}" if r else None)


def history_public(h: StationHistory) -> StationHistoryPublic:
    return StationHistoryPublic(station=station_public(h.station), hourly=[hour_public(x) for x in h.hourly],
                                daily=[day_public(x) for x in h.daily])


def level_public(c: aqi.Category) -> LevelPublic:
    return LevelPublic(level=c.level, level_zh=c.level_zh, category=Localized(zh=c.category_zh, en=c.category_en),
                       category_key=c.category_key, colour=Localized(zh=c.colour_zh, en=c.colour_en),
                       colour_hex=c.hex, rgb=list(c.rgb))


def aqi_public(result: aqi.AqiResult, choice: EditionChoice | None = None) -> AqiPublic:
    return AqiPublic(
        standard=f"HJ 633—{result.edition}", edition=result.edition,
        edition_source=choice.source if choice else "date", date=choice.day if choice else None,
        period=result.period, aqi=result.aqi, level=level_public(result.category) if result.category else None,
        primary_pollutants=list(result.primary_pollutants),
        exceeding_pollutants=list(result.exceeding_pollutants) if result.edition == "2012" else None,
        sub_indices=[SubIndexPublic(pollutant=s.pollutant, unit=aqi.UNITS[s.pollutant], averaging=s.averaging,
                                    concentration=s.concentration, used=s.used, iaqi=s.iaqi, note=s.note)
                     for s in result.sub_indices])


def station_public(s: StationAqi) -> StationPublic:
    return StationPublic(id=s.entity_id, name=Localized(zh=s.name, en=s.name_en), district=s.district,
                         point_type=s.point_type,
                         location=PointPublic(lon=s.location[0], lat=s.location[1]) if s.location else None,
                         observed_at=s.observed_at, current=s.current, concentrations=s.concentrations,
                         aqi=aqi_public(s.result) if s.result else None)


def area_public(a: AreaAqi) -> AreaPublic:
    return AreaPublic(name=a.name, stations_total=a.stations_total, stations_used=a.stations_used,
                      concentrations=a.concentrations,
                      aqi=aqi_public(a.result) if a.result else None)


class WarningIn(StrictModel):
    """A weather warning signal as 市气象局 issues it."""

    signal: Literal["rainstorm", "high_temperature"]
    level: Literal["blue", "yellow", "orange", "red"]
    area_name: str = Field(min_length=1, max_length=64, description="e.g. 全市, 龙泉驿区")
    area: dict[str, Any] = Field(description="GeoJSON Polygon or MultiPolygon (lon, lat) within Chengdu")
    valid_from: dt.datetime = Field(description="with a time zone; at most 1 hour in the past")
    valid_to: dt.datetime = Field(description="after valid_from, in the future, at most 72 hours later")
    guidance_zh: str = Field(min_length=1, max_length=2000, description="防御指南")
    guidance_en: str | None = Field(None, max_length=2000)


class WarningPublic(BaseModel):
    id: str
    signal: str
    level: str
    name: Localized
    severity: str
    criterion: Localized
    area_name: str
    area: dict[str, Any]
    valid_from: dt.datetime
    valid_to: dt.datetime
    issued_at: dt.datetime
    status: str = Field(description="issued or lifted")
    in_force: bool
    guidance: dict[str, str]
    issued_by: str | None


def warning_public(w: WeatherWarning, now: dt.datetime) -> WarningPublic:
    return WarningPublic(id=w.id, signal=w.signal, level=w.level, name=Localized(zh=w.name_zh, en=w.name_en),
                         severity=w.severity, criterion=Localized(zh=w.criterion_zh, en=w.criterion_en),
                         area_name=w.area_name, area=w.area, valid_from=w.valid_from, valid_to=w.valid_to,
                         issued_at=w.issued_at, status=w.status, in_force=w.in_force(now),
                         guidance={"zh": w.guidance_zh, **({"en": w.guidance_en} if w.guidance_en else {})},
                         issued_by=w.issued_by)
