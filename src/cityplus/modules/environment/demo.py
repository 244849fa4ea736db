"""Demo data of the environment module: Chengdu's air-quality monitoring stations with plausible current values.

The eight national control stations (国控点) of the central city are real sites; the district stations are plausible
sites in each outer district. Locations are approximate and every value is simulated: each entity says so in its
`dataProvider`.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from cityplus.core.audit import Actor
from cityplus.core.context import AppContext
from cityplus.modules.context import service as context
from cityplus.modules.environment import service

PROVIDER = "CityPlus demo data — simulated values at Chengdu monitoring sites (演示数据，非实测)"

# code, name, English name, district, lat, lon, point type (urban: 城市评价点; background: 对照点)
STATIONS: tuple[tuple[str, str, str, str, float, float, str], ...] = (
    ("jinquanlianghe", "金泉两河", "Jinquan Lianghe", "金牛区", 30.7206, 104.0370, "urban"),
    ("liangjiaxiang", "梁家巷", "Liangjiaxiang", "金牛区", 30.6913, 104.0805, "urban"),
    ("shilidian", "十里店", "Shilidian", "成华区", 30.6823, 104.1300, "urban"),
    ("sanwayao", "三瓦窑", "Sanwayao", "武侯区", 30.5867, 104.0716, "urban"),
    ("shahepu", "沙河铺", "Shahepu", "锦江区", 30.6240, 104.1074, "urban"),
    ("caotangsi", "草堂寺", "Caotang Temple", "青羊区", 30.6612, 104.0318, "urban"),
    ("junpingjie", "君平街", "Junping Street", "青羊区", 30.6545, 104.0566, "urban"),
    ("lingyansi", "灵岩寺", "Lingyan Temple", "都江堰市", 31.0085, 103.6142, "background"),
    ("longquanyi", "龙泉驿区政府", "Longquanyi district government", "龙泉驿区", 30.5567, 104.2745, "urban"),
    ("xindu", "新都区监测站", "Xindu monitoring station", "新都区", 30.8236, 104.1597, "urban"),
    ("qingbaijiang", "青白江区监测站", "Qingbaijiang monitoring station", "青白江区", 30.8805, 104.2513, "urban"),
    ("wenjiang", "温江区监测站", "Wenjiang monitoring station", "温江区", 30.6822, 103.8520, "urban"),
    ("shuangliu", "双流区监测站", "Shuangliu monitoring station", "双流区", 30.5745, 103.9230, "urban"),
    ("pidu", "郫都区监测站", "Pidu monitoring station", "郫都区", 30.8090, 103.9010, "urban"),
    ("xinjin", "新津区监测站", "Xinjin monitoring station", "新津区", 30.4100, 103.8110, "urban"),
    ("huayang", "天府新区华阳", "Huayang, Tianfu New Area", "天府新区", 30.5010, 104.0510, "urban"),
)


def values(rng: random.Random, factor: float = 1.0) -> dict[str, float]:
    """Plausible hourly means for a Chengdu winter morning (µg/m³; CO mg/m³)."""
    return {"pm25": round(rng.uniform(30, 95) * factor), "pm10": round(rng.uniform(50, 140) * factor),
            "no2": round(rng.uniform(20, 70) * factor), "so2": round(rng.uniform(3, 12)),
            "o3": round(rng.uniform(15, 80)), "co": round(rng.uniform(0.5, 1.3) * factor, 1)}


def entities(now: datetime | None = None, seed: int = 2026) -> list[dict[str, Any]]:
    """The demo stations with values observed at the start of the current hour."""
    at = (now or datetime.now(UTC)).replace(minute=0, second=0, microsecond=0)
    rng = random.Random(seed)
    return [service.station_entity(code, zh, en, district, lat, lon, point_type=kind,
                                   values=values(rng, 0.6 if kind == "background" else 1.0), observed_at=at,
                                   provider=PROVIDER)
            for code, zh, en, district, lat, lon, kind in STATIONS]


HISTORY_DAYS = 30


def history(now: datetime | None = None, days: int = HISTORY_DAYS, seed: int = 2026
            ) -> dict[str, dict[str, dict[datetime, float]]]:
    """Simulated hourly values of every demo station for the `days` × 24 hours before the current hour: the same
    ranges as values(), particles and NO2 higher at night and in the morning rush, ozone in the afternoon, a
    few hours missing (so some days fall short of GB 3095's 20 hours)."""
    at = (now or datetime.now(UTC)).replace(minute=0, second=0, microsecond=0)
    rng = random.Random(seed + 1)
    out: dict[str, dict[str, dict[datetime, float]]] = {}
    for code, _zh, _en, _district, _lat, _lon, kind in STATIONS:
        series: dict[str, dict[datetime, float]] = {}
        for k in range(1, days * 24 + 1):
            t = at - timedelta(hours=k)
            if rng.random() < 0.03:  # an hour the analyser did not deliver
                continue
            local = (t.hour + 8) % 24
            night = 1.25 if local < 8 or local >= 20 else 0.9
            sun = max(0.0, 1.0 - abs(local - 15) / 6)  # ozone peaks mid-afternoon
            v = values(rng, (0.6 if kind == "background" else 1.0) * night)
            v["o3"] = round(20 + 150 * sun * rng.uniform(0.6, 1.2))
            for p, value in v.items():
                series.setdefault(p, {})[t] = value
        out[f"urn:ngsi-ld:AirQualityObserved:chengdu-{code}"] = series
    return out


def load(session: Session, ctx: AppContext) -> None:
    active = context.core_context(ctx)
    service.upsert_stations(session, active, Actor.system("demo"), entities())
    service.load_history(session, active, Actor.system("demo"), history())
