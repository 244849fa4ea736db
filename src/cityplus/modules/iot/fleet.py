"""The simulated city's devices (模拟设备): what they measure, where they stand in Chengdu, how their values move.

Every site is plausible but simulated, and labelled so on its entity (`dataProvider`). Values follow a diurnal cycle
(peak hour, amplitude), a weekly factor for human activity (traffic, parking, power), and noise.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

CST = timezone(timedelta(hours=8))  # China Standard Time: the city's daily rhythm
PROVIDER = "CityPlus simulator — simulated data (模拟数据)"


@dataclass(frozen=True)
class Measure:
    object_id: str
    name: str
    type: str
    unit: str | None
    base: float
    amplitude: float = 0.0
    peak_hour: float = 14.0
    noise: float = 0.0
    low: float = 0.0
    high: float = 1e9
    decimals: int = 1
    weekly: bool = False  # lower at weekends (traffic, power), higher where leisure drives it is not modelled


@dataclass(frozen=True)
class Site:
    name_zh: str
    name_en: str
    district: str
    lat: float
    lon: float


@dataclass(frozen=True)
class Kind:
    key: str
    entity_type: str
    fmt: str  # ul | json (the payload the devices speak)
    interval: int  # seconds between a device's messages in the field
    measures: tuple[Measure, ...]
    sites: tuple[Site, ...]
    moving: bool = False  # bus GPS: position from a route, not a fixed location

    @property
    def apikey(self) -> str:
        return f"sim-{self.key}"

    @property
    def resource(self) -> str:
        return "/iot/d" if self.fmt == "ul" else "/iot/json"


M = Measure
KINDS: tuple[Kind, ...] = (
    Kind("aq", "AirQualityObserved", "ul", 300, (
        M("pm25", "pm25", "Number", "GQ", 45, 15, 8, 6, 3, 500, 0),
        M("pm10", "pm10", "Number", "GQ", 70, 20, 8, 8, 5, 600, 0),
        M("no2", "no2", "Number", "GQ", 38, 14, 9, 5, 2, 300, 0, weekly=True),
        M("o3", "o3", "Number", "GQ", 80, 45, 15, 8, 2, 400, 0),
        M("so2", "so2", "Number", "GQ", 6, 2, 10, 1, 1, 100, 0),
        M("co", "co", "Number", "GP", 0.7, 0.2, 8, 0.05, 0.1, 10, 2)), (
        Site("金泉两河", "Jinquan Lianghe", "金牛区", 30.7206, 104.0370),
        Site("十里店", "Shilidian", "成华区", 30.6823, 104.1300),
        Site("三瓦窑", "Sanwayao", "武侯区", 30.5867, 104.0716),
        Site("沙河铺", "Shahepu", "锦江区", 30.6240, 104.1074),
        Site("草堂寺", "Caotang Temple", "青羊区", 30.6612, 104.0318),
        Site("灵岩寺", "Lingyan Temple", "都江堰市", 31.0085, 103.6142))),
    Kind("weather", "WeatherObserved", "json", 600, (
        M("t", "temperature", "Number", "CEL", 17, 5, 15, 0.4, -8, 42),
        M("h", "relativeHumidity", "Number", "P1", 72, -12, 15, 2, 15, 100, 0),
        M("ws", "windSpeed", "Number", "MTS", 1.6, 0.8, 15, 0.3, 0, 25),
        M("p", "atmosphericPressure", "Number", "A97", 953, -2, 16, 0.3, 930, 980),
        M("r", "precipitation", "Number", "MMT", 0.1, 0.1, 3, 0.1, 0, 80)), (
        Site("温江气象站", "Wenjiang weather station", "温江区", 30.6822, 103.8560),
        Site("双流机场气象站", "Shuangliu airport weather station", "双流区", 30.5785, 103.9471),
        Site("龙泉驿气象站", "Longquanyi weather station", "龙泉驿区", 30.5570, 104.2750))),
    Kind("water", "WaterQualityObserved", "ul", 900, (
        M("ph", "pH", "Number", None, 7.6, 0.2, 15, 0.05, 6, 9.5, 2),
        M("do", "dissolvedOxygen", "Number", "M1", 7.2, 1.2, 15, 0.2, 1, 14),
        M("tu", "turbidity", "Number", None, 18, 4, 10, 2, 1, 300),
        M("wt", "temperature", "Number", "CEL", 16, 2, 16, 0.2, 2, 32)), (
        Site("府河永安桥断面", "Fu River, Yong'an Bridge section", "新都区", 30.8036, 104.1302),
        Site("南河望江楼断面", "Nan River, Wangjiang Tower section", "锦江区", 30.6312, 104.0919),
        Site("沙河二仙桥断面", "Sha River, Erxianqiao section", "成华区", 30.6788, 104.1177))),
    Kind("noise", "NoiseLevelObserved", "ul", 300, (
        M("laeq", "LAeq", "Number", "2N", 58, 7, 13, 1.5, 30, 100),
        M("lamax", "LAmax", "Number", "2N", 71, 8, 13, 3, 35, 120)), (
        Site("春熙路", "Chunxi Road", "锦江区", 30.6543, 104.0780),
        Site("天府广场", "Tianfu Square", "青羊区", 30.6574, 104.0659),
        Site("高新区天府三街", "Tianfu 3rd Street, High-tech Zone", "高新区", 30.5440, 104.0625))),
    Kind("stack", "EmissionMeasurement", "json", 300, (
        M("so2", "so2Concentration", "Number", "GQ", 28, 6, 11, 3, 0, 400, 0),
        M("nox", "noxConcentration", "Number", "GQ", 65, 12, 11, 5, 0, 600, 0),
        M("dust", "particulateConcentration", "Number", "GQ", 6, 2, 11, 1, 0, 100),
        M("flow", "flueGasFlow", "Number", "MQH", 180000, 30000, 11, 4000, 0, 500000, 0, weekly=True)), (
        Site("青白江工业园烟囱1号", "Qingbaijiang industrial park, stack 1", "青白江区", 30.8780, 104.2510),
        Site("新都工业东区烟囱3号", "Xindu east industrial zone, stack 3", "新都区", 30.8420, 104.1890))),
    Kind("traffic", "TrafficFlowObserved", "ul", 300, (
        M("q", "intensity", "Integer", None, 160, 90, 17.5, 15, 0, 600, 0, weekly=True),
        M("v", "averageVehicleSpeed", "Number", "KMH", 42, -14, 17.5, 3, 3, 90, 0, weekly=True),
        M("o", "occupancy", "Number", None, 0.32, 0.2, 17.5, 0.04, 0, 1, 2, weekly=True)), (
        Site("二环路人民北路立交", "2nd Ring Road at Renmin North Road", "金牛区", 30.6951, 104.0720),
        Site("三环路川陕立交", "3rd Ring Road, Chuanshan interchange", "成华区", 30.7222, 104.1240),
        Site("绕城高速成温立交", "Ring Expressway, Chengwen interchange", "温江区", 30.6930, 103.9340),
        Site("二环路红牌楼", "2nd Ring Road at Hongpailou", "武侯区", 30.6320, 104.0300))),
    Kind("parking", "OffStreetParking", "json", 300, (
        M("free", "availableSpotNumber", "Integer", None, 260, -180, 15, 12, 0, 600, 0, weekly=True),), (
        Site("太古里停车场", "Taikoo Li car park", "锦江区", 30.6547, 104.0830),
        Site("环球中心停车场", "New Century Global Center car park", "高新区", 30.5700, 104.0630),
        Site("成都东站停车场", "Chengdu East Station car park", "成华区", 30.6290, 104.1420))),
    Kind("meter", "ElectricityMeter", "ul", 900, (
        M("p", "activePower", "Number", "KWT", 2.1, 1.3, 20, 0.3, 0, 30, 2, weekly=True),), (
        Site("玉林小区", "Yulin residential quarter", "武侯区", 30.6300, 104.0580),
        Site("猛追湾街道", "Mengzhuiwan subdistrict", "成华区", 30.6640, 104.1000),
        Site("天府新区华阳街道", "Huayang subdistrict, Tianfu New Area", "天府新区", 30.5000, 104.0500))),
    Kind("farm", "AgriParcelRecord", "ul", 1800, (
        M("sm", "soilMoisture", "Number", None, 0.34, -0.04, 15, 0.01, 0.05, 0.6, 3),
        M("st", "soilTemperature", "Number", "CEL", 16, 3, 16, 0.3, 0, 35),
        M("at", "airTemperature", "Number", "CEL", 17, 5, 15, 0.5, -8, 40)), (
        Site("郫都区唐昌镇蔬菜基地", "Tangchang vegetable base", "郫都区", 30.8730, 103.8380),
        Site("崇州市隆兴镇粮油基地", "Longxing grain base", "崇州市", 30.6140, 103.5870),
        Site("彭州市濛阳镇蔬菜基地", "Mengyang vegetable base", "彭州市", 30.9410, 103.9930))),
    Kind("hazard", "HazardSourceObserved", "json", 120, (
        M("gas", "gasConcentration", "Number", "59", 3, 1, 14, 0.6, 0, 1000),
        M("tk", "tankTemperature", "Number", "CEL", 24, 4, 15, 0.3, -10, 120),
        M("pr", "tankPressure", "Number", "KPA", 210, 6, 15, 1.5, 0, 800, 0)), (
        Site("青白江化工园储罐区A", "Qingbaijiang chemical park, tank farm A", "青白江区", 30.8950, 104.2670),
        Site("彭州石化基地储罐区", "Pengzhou petrochemical base, tank farm", "彭州市", 31.0310, 103.9140))),
    Kind("bus", "Vehicle", "json", 30, (
        M("v", "speed", "Number", "KMH", 22, 8, 12, 6, 0, 70),), (
        Site("1路公交", "Bus line 1", "锦江区", 30.6570, 104.0660),
        Site("27路公交", "Bus line 27", "武侯区", 30.6420, 104.0430),
        Site("二环快速公交K1", "2nd Ring BRT K1", "成华区", 30.6600, 104.0650)), moving=True),
)


@dataclass
class SimDevice:
    kind: Kind
    index: int
    site: Site
    rng: random.Random = field(repr=False, default_factory=random.Random)

    @property
    def device_id(self) -> str:
        return f"sim-{self.kind.key}-{self.index:03d}"

    def reading(self, at: datetime) -> dict[str, Any]:
        """Measures at a time: diurnal cycle, weekly factor, noise; bus GPS adds its position on its route."""
        local = at.astimezone(CST)
        hour = local.hour + local.minute / 60
        weekend = local.weekday() >= 5
        values: dict[str, Any] = {}
        for m in self.kind.measures:
            cycle = math.cos(2 * math.pi * (hour - m.peak_hour) / 24)
            factor = 0.7 if (m.weekly and weekend) else 1.0
            value = (m.base + m.amplitude * cycle) * factor + self.rng.gauss(0, m.noise)
            value = min(max(value, m.low), m.high)
            values[m.object_id] = int(round(value)) if m.decimals == 0 else round(value, m.decimals)
        if self.kind.moving:
            # a loop of ~4 km radius around the line's centre, one lap an hour, each bus phase-shifted
            angle = 2 * math.pi * ((at.timestamp() / 3600) % 1 + self.index / 7)
            values["lat"] = round(self.site.lat + 0.036 * math.sin(angle), 6)
            values["lon"] = round(self.site.lon + 0.042 * math.cos(angle), 6)
        return values


def fleet(seed: int | None = None) -> list[SimDevice]:
    """One simulated device per site."""
    rng = random.Random(seed)
    out = []
    for kind in KINDS:
        for i, site in enumerate(kind.sites, start=1):
            out.append(SimDevice(kind, i, site, random.Random(rng.random())))
    return out


def group_payload(kind: Kind) -> dict[str, Any]:
    """The service group of a kind, as an IoT Agent provisioning payload."""
    attrs: list[dict[str, Any]] = []
    for m in kind.measures:
        a: dict[str, Any] = {"object_id": m.object_id, "name": m.name, "type": m.type}
        if m.unit:
            a["metadata"] = {"unitCode": {"type": "Text", "value": m.unit}}
        attrs.append(a)
    if kind.moving:
        attrs += [{"object_id": "lat", "name": "lat", "type": "Number"},
                  {"object_id": "lon", "name": "lon", "type": "Number"}]
    return {"apikey": kind.apikey, "resource": kind.resource, "entity_type": kind.entity_type,
            "explicitAttrs": True, "expected_interval": kind.interval, "attributes": attrs,
            "static_attributes": [{"name": "dataProvider", "type": "Text", "value": PROVIDER}],
            "description": f"CityPlus simulator: {kind.entity_type}"}


def device_payload(d: SimDevice) -> dict[str, Any]:
    statics: list[dict[str, Any]] = [
        {"name": "name", "type": "Text", "value": d.site.name_zh},
        {"name": "alternateName", "type": "Text", "value": d.site.name_en},
        {"name": "areaServed", "type": "Text", "value": d.site.district}]
    if not d.kind.moving:
        statics.append({"name": "location", "type": "geo:point", "value": f"{d.site.lat}, {d.site.lon}"})
    return {"device_id": d.device_id, "entity_name": f"urn:ngsi-ld:{d.kind.entity_type}:{d.device_id}",
            "entity_type": d.kind.entity_type, "protocol": "PDI-IoTA-UltraLight" if d.kind.fmt == "ul" else
            "PDI-IoTA-JSON", "static_attributes": statics}
