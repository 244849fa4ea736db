"""Demo catalogue of the demo city: about 100 plausible datasets from many departments, districts and all 12 plan
areas, with tables generated from plausible distributions (seeded, so every load is the same). Every dataset is
flagged `demo` and says so on its page: these are not real figures."""

from __future__ import annotations

import csv
import io
import random
from collections.abc import Callable
from datetime import date, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from cityplus.core.audit import Actor
from cityplus.core.context import AppContext
from cityplus.core.identity import service as identity
from cityplus.modules.opendata import service
from cityplus.modules.opendata.models import Dataset
from cityplus.modules.opendata.schemas import DatasetFields, ResourceFields

CENTRE = (104.066, 30.657)  # 天府广场
Table = tuple[list[str], list[list[object]]]


def _point(rng: random.Random, spread: float = 0.12) -> tuple[float, float]:
    return round(CENTRE[0] + rng.gauss(0, spread), 5), round(CENTRE[1] + rng.gauss(0, spread * 0.8), 5)


def _cn_date(d: date) -> str:
    return f"{d.year}年{d.month}月{d.day}日"


def air_quality(rng: random.Random) -> Table:
    stations = ["金牛坝", "沙河铺", "梁家巷", "草堂寺", "市监测站", "三瓦窑", "君平街", "灵岩寺", "大石西路"]
    rows: list[list[object]] = []
    for day in range(10):
        d = date(2016, 3, 1) + timedelta(days=day)
        for s in stations:
            pm25 = max(5, round(rng.lognormvariate(4.0, 0.4), 1))
            aqi = int(min(500, pm25 * 1.3 + rng.uniform(0, 15)))
            lon, lat = _point(random.Random(s), 0.06)
            rows.append([s, _cn_date(d), aqi, pm25, round(pm25 * rng.uniform(1.3, 1.8), 1), lon, lat,
                         "是" if aqi <= 100 else "否"])
    return ["监测点位", "日期", "AQI", "PM2.5浓度", "PM10浓度", "经度", "纬度", "达标"], rows


def bus_stops(rng: random.Random) -> Table:
    rows: list[list[object]] = []
    for line in (1, 4, 16, 27, 45, 55, 62, 81, 98, 115):
        for n in range(1, rng.randint(12, 22)):
            lon, lat = _point(rng, 0.08)
            rows.append([f"{line}路", n, f"{rng.choice(['人民', '蜀都', '天府', '锦城', '府河', '红星'])}"
                         f"{rng.choice(['路口', '大道站', '桥站', '街北站', '广场站'])}", lon, lat, "6:30", "22:00"])
    return ["线路", "站序", "站点名称", "经度", "纬度", "首班", "末班"], rows


def parking(rng: random.Random, district: str = "") -> Table:
    rows: list[list[object]] = []
    for n in range(rng.randint(15, 40)):
        lon, lat = _point(rng, 0.1)
        spaces = int(rng.lognormvariate(5, 0.6))
        place = rng.choice(["万达", "太古里", "体育中心", "人民医院", "地铁站", "市民中心"])
        rows.append([f"{district}{place}停车场{n + 1}",
                     f"{spaces:,}", rng.choice(["5元/小时", "3元/小时", "首小时免费"]), lon, lat])
    return ["停车场名称", "泊位数", "收费标准", "经度", "纬度"], rows


def schools(rng: random.Random, district: str = "") -> Table:
    kinds = ["小学", "初级中学", "完全中学", "九年一贯制学校"]
    rows: list[list[object]] = []
    for n in range(rng.randint(12, 30)):
        kind = rng.choice(kinds)
        rows.append([f"成都市{district}第{n + 1}{kind}", kind, "公办" if rng.random() < 0.85 else "民办",
                     int(rng.gauss(1400, 400)), int(rng.gauss(95, 25))])
    return ["学校名称", "学段", "办学性质", "在校学生数", "专任教师数"], rows


def monthly(indicators: list[tuple[str, float, float]]) -> Callable[[random.Random], Table]:
    """Monthly statistics 2015–2016 for indicators (name, mean, relative spread)."""
    def build(rng: random.Random) -> Table:
        rows: list[list[object]] = []
        for y in (2015, 2016):
            for m in range(1, 13):
                rows.append([f"{y}年{m}月", *[f"{round(mean * (1 + rng.gauss(0, spread)), 1):,}"
                                            for _, mean, spread in indicators]])
        return ["统计月份", *[name for name, _, _ in indicators]], rows
    return build


def hospitals(rng: random.Random) -> Table:
    rows: list[list[object]] = []
    for n, name in enumerate(["四川大学华西医院", "四川省人民医院", "成都市第一人民医院", "成都市第二人民医院",
                              "成都市第三人民医院", "成都市妇女儿童中心医院", "成都市中西医结合医院",
                              "成都市公共卫生临床医疗中心", "成都市第五人民医院", "成都市第六人民医院"]):
        lon, lat = _point(rng, 0.07)
        rows.append([name, "三级甲等" if n < 7 else "三级乙等", int(rng.gauss(1500, 600)), lon, lat, "是"])
    return ["医院名称", "等级", "床位数", "经度", "纬度", "医保定点"], rows


A = {n: f"area-{n}" for n in range(1, 13)}
# name, org, title zh, title en, themes, keywords, frequency, opening, sharing, table builder
CATALOGUE: list[tuple[str, str, str, str, list[str], list[str], str, str, str, Callable[..., Table] | None]] = [
    ("air-quality-hourly", "hbj", "成都市空气质量实时监测数据", "Chengdu real-time air quality", [A[11], "ENVI"],
     ["空气质量", "AQI", "PM2.5"], "CONT", "open", "share", air_quality),
    ("surface-water-quality", "hbj", "成都市地表水断面水质月报", "Surface water quality by section, monthly",
     [A[11], "ENVI"], ["水质", "断面"], "MONTHLY", "open", "share",
     monthly([("达标断面比例(%)", 78, 0.05), ("化学需氧量(mg/L)", 14, 0.2)])),
    ("noise-monitoring", "hbj", "功能区声环境质量监测", "Noise by functional zone", [A[11], "ENVI"], ["噪声"],
     "QUARTERLY", "open", "share", monthly([("昼间等效声级(dB)", 56, 0.03), ("夜间等效声级(dB)", 47, 0.04)])),
    ("polluter-register", "hbj", "重点排污单位名录", "Register of key polluters", [A[11], "ENVI"], ["排污", "企业"],
     "ANNUAL", "conditional", "share", None),
    ("bus-stops", "jiaow", "公交线路站点", "Bus routes and stops", [A[10], "TRAN"], ["公交", "站点"], "MONTHLY",
     "open", "share", bus_stops),
    ("metro-ridership", "jiaow", "地铁客流统计", "Metro ridership", [A[10], "TRAN"], ["地铁", "客流"], "MONTHLY",
     "open", "share", monthly([("日均客运量(万人次)", 98, 0.08), ("换乘量(万人次)", 31, 0.1)])),
    ("taxi-operations", "jiaow", "出租汽车运营统计", "Taxi operations", [A[10], "TRAN"], ["出租车"], "MONTHLY",
     "open", "share", monthly([("日均载客次数(万次)", 112, 0.06), ("平均里程利用率(%)", 68, 0.04)])),
    ("traffic-flow", "gaj-jgj", "主干道交通流量", "Traffic flow on arterial roads", [A[10], "TRAN"],
     ["交通流量", "拥堵"],
     "DAILY", "open", "share", monthly([("高峰平均车速(km/h)", 22, 0.1), ("拥堵指数", 1.8, 0.1)])),
    ("traffic-violations", "gaj-jgj", "交通违法处理统计", "Traffic offences handled", [A[10], "JUST"], ["交通违法"],
     "MONTHLY", "conditional", "share", monthly([("处理起数", 180000, 0.1)])),
    ("social-insurance", "rsj", "社会保险参保人数统计", "People insured by social insurance", [A[7], "SOCI"],
     ["社保", "参保"], "MONTHLY", "open", "share",
     monthly([("养老保险参保人数", 7_300_000, 0.02), ("医疗保险参保人数", 14_100_000, 0.02),
              ("失业保险参保人数", 3_900_000, 0.03)])),
    ("job-vacancies", "rsj", "人力资源市场供求信息", "Labour market supply and demand", [A[7], A[1], "ECON"],
     ["就业", "招聘"], "QUARTERLY", "open", "share",
     monthly([("岗位需求数", 150000, 0.1), ("求职人数", 128000, 0.1)])),
    ("social-security-cards", "rsj", "社会保障卡服务网点", "Social security card service points", [A[7], "SOCI"],
     ["社保卡", "网点"], "IRREG", "open", "share", parking),
    ("hospitals", "wjw", "医疗机构名录", "Hospitals", [A[7], "HEAL"], ["医院", "医保定点"], "ANNUAL", "open", "share",
     hospitals),
    ("outpatient-visits", "wjw", "医疗机构门急诊人次", "Outpatient visits", [A[7], "HEAL"], ["门诊"], "MONTHLY",
     "open", "share", monthly([("门急诊人次(万)", 1050, 0.08)])),
    ("schools", "jyj", "中小学校名录", "Primary and secondary schools", [A[7], "EDUC"], ["学校", "教育"], "ANNUAL",
     "open", "share", schools),
    ("enterprise-registrations", "gongsj", "市场主体登记统计", "Business registrations", [A[1], A[6], "ECON"],
     ["市场主体", "企业登记"], "MONTHLY", "open", "share",
     monthly([("新登记企业数", 16000, 0.12), ("新登记个体工商户数", 21000, 0.12)])),
    ("gdp-quarterly", "fgw", "地区生产总值", "Gross regional product", [A[12], "ECON"], ["GDP", "经济"], "QUARTERLY",
     "open", "share", monthly([("地区生产总值(亿元)", 900, 0.05)])),
    ("key-projects", "fgw", "市级重点项目清单", "Key municipal projects", [A[12], "ECON"], ["重点项目"], "ANNUAL",
     "open", "share", None),
    ("fiscal-budget", "czj", "财政预算执行情况", "Budget execution", [A[6], "GOVE"], ["财政", "预算"],
     "MONTHLY", "open",
     "share", monthly([("一般公共预算收入(亿元)", 95, 0.15), ("一般公共预算支出(亿元)", 115, 0.15)])),
    ("gov-service-items", "zwfwb", "政务服务事项目录", "Government service items", [A[6], "GOVE"], ["办事指南",
     "政务服务"],
     "IRREG", "open", "share", None),
    ("service-centre-queues", "zfzwzx", "政务中心窗口办件量", "Cases handled at the government centre",
     [A[6], "GOVE"], ["办件量"], "DAILY", "open", "share", monthly([("受理件数", 52000, 0.1), ("办结件数",
      51000, 0.1)])),
    ("public-tenders", "gzjyzx", "公共资源交易公告", "Public resource trading notices", [A[6], "ECON"], ["招投标"],
     "DAILY", "open", "share", monthly([("交易项目数", 820, 0.2), ("成交金额(亿元)", 160, 0.3)])),
    ("weather-daily", "qxj", "逐日气象观测数据", "Daily weather observations", [A[11], A[3], "ENVI"], ["气象", "降水"],
     "DAILY", "open", "share", monthly([("平均气温(℃)", 16.5, 0.4), ("降水量(mm)", 80, 0.8)])),
    ("agri-prices", "nw", "主要农产品批发价格", "Wholesale prices of farm produce", [A[3], "AGRI"], ["农产品", "价格"],
     "WEEKLY", "open", "share", monthly([("猪肉(元/公斤)", 26, 0.08), ("大白菜(元/公斤)", 1.6, 0.2)])),
    ("farm-cooperatives", "nw", "农民专业合作社名录", "Farmers' cooperatives", [A[3], "AGRI"], ["合作社"], "ANNUAL",
     "open", "share", None),
    ("retail-sales", "sww", "社会消费品零售总额", "Retail sales", [A[4], "ECON"], ["消费", "零售"], "MONTHLY", "open",
     "share", monthly([("零售总额(亿元)", 430, 0.06)])),
    ("ecommerce-stats", "sww", "电子商务交易额", "E-commerce turnover", [A[4], "ECON"], ["电子商务"], "QUARTERLY",
     "open", "share", monthly([("交易额(亿元)", 780, 0.1)])),
    ("financial-institutions", "jrb", "金融机构名录", "Financial institutions", [A[5], "ECON"], ["银行", "金融"],
     "ANNUAL", "open", "share", None),
    ("industrial-output", "jxw", "规模以上工业增加值", "Industrial value added", [A[2], "ECON"], ["工业"], "MONTHLY",
     "open", "share", monthly([("工业增加值增速(%)", 7.5, 0.15)])),
    ("tech-enterprises", "kjj", "高新技术企业名录", "High-tech enterprises", [A[1], "TECH"], ["高新技术"], "ANNUAL",
     "open", "share", None),
    ("incubators", "kjj", "科技企业孵化器", "Business incubators", [A[1], "TECH"], ["孵化器", "创业"], "ANNUAL", "open",
     "share", parking),
    ("port-logistics", "kawlb", "航空港货邮吞吐量", "Airport cargo throughput", [A[9], "TRAN"], ["物流", "航空"],
     "MONTHLY", "open", "share", monthly([("货邮吞吐量(万吨)", 4.5, 0.1)])),
    ("power-consumption", "jxw", "全社会用电量", "Electricity consumption", [A[8], "ENER"], ["用电量", "能源"],
     "MONTHLY", "open", "share", monthly([("用电量(亿千瓦时)", 58, 0.1)])),
    ("gas-stations", "jxw", "加气站分布", "CNG stations", [A[8], "ENER"], ["加气站"], "IRREG", "open", "share",
     parking),
    ("water-supply", "swj", "城市供水水质公示", "Tap water quality", [A[11], "ENVI"], ["供水", "水质"], "MONTHLY",
     "open", "share", monthly([("浊度(NTU)", 0.2, 0.2), ("余氯(mg/L)", 0.5, 0.1)])),
    ("housing-transactions", "fgj", "商品房成交统计", "Housing transactions", [A[7], "ECON"], ["房地产"], "MONTHLY",
     "open", "share", monthly([("成交套数", 15000, 0.15), ("成交均价(元/平方米)", 7600, 0.05)])),
    ("civil-affairs-aid", "mzj", "城乡低保统计", "Minimum living allowance", [A[7], "SOCI"], ["低保", "救助"],
     "QUARTERLY", "open", "share", monthly([("保障人数", 210000, 0.03)])),
    ("elderly-care", "mzj", "养老服务机构名录", "Elderly care homes", [A[7], "SOCI"], ["养老"], "ANNUAL", "open",
     "share", parking),
    ("food-inspections", "syjj", "食品安全抽检结果", "Food safety inspections", [A[7], "HEAL"], ["食品安全"],
     "MONTHLY", "open", "share", monthly([("抽检批次", 3200, 0.1), ("合格率(%)", 97.5, 0.01)])),
    ("product-quality", "zjj", "产品质量监督抽查", "Product quality checks", [A[2], "ECON"], ["质量监督"], "QUARTERLY",
     "open", "share", monthly([("抽查批次", 900, 0.1)])),
    ("tourism", "lyj", "旅游接待统计", "Tourism", [A[4], "EDUC"], ["旅游", "游客"], "MONTHLY", "open", "share",
     monthly([("接待游客(万人次)", 1600, 0.15), ("旅游收入(亿元)", 190, 0.15)])),
    ("libraries", "wgxj", "公共文化场馆", "Public cultural venues", [A[7], "EDUC"], ["图书馆", "文化"], "ANNUAL",
     "open", "share", parking),
    ("sports-venues", "tyj", "公共体育场馆开放信息", "Public sports venues", [A[7], "EDUC"], ["体育场馆"], "ANNUAL",
     "open", "share", parking),
    ("exhibitions", "blj", "会展活动统计", "Exhibitions", [A[4], "ECON"], ["会展"], "ANNUAL", "open", "share",
     monthly([("展会场次", 45, 0.3)])),
    ("work-safety", "ajj", "安全生产事故统计", "Work-safety accidents", [A[12], "JUST"], ["安全生产"], "MONTHLY",
     "conditional", "share", monthly([("事故起数", 40, 0.3)])),
    ("construction-permits", "jianw", "建设工程施工许可", "Construction permits", [A[6], "REGI"], ["施工许可"],
     "MONTHLY", "open", "share", monthly([("发证数", 210, 0.2)])),
    ("city-management", "cgw", "城市管理案件统计", "City management cases", [A[12], "REGI"], ["城管", "数字城管"],
     "MONTHLY", "open", "share", monthly([("立案数", 42000, 0.1), ("结案率(%)", 96, 0.01)])),
    ("fire-stations", "gaj-xfj", "消防站分布", "Fire stations", [A[12], "JUST"], ["消防"], "IRREG", "open", "share",
     parking),
    ("household-registration", "gaj", "户籍人口统计", "Registered population", [A[12], "SOCI"], ["人口", "户籍"],
     "ANNUAL", "closed", "share", monthly([("户籍人口(万人)", 1228, 0.005)])),
    ("postal-outlets", "yzglj", "邮政快递网点", "Postal and courier outlets", [A[9], "TRAN"], ["快递", "邮政"],
     "ANNUAL",
     "open", "share", parking),
    ("talent-policies", "rcb", "人才引进统计", "Talent attraction", [A[1], "SOCI"], ["人才"], "QUARTERLY", "open",
     "share", monthly([("引进人才数", 5200, 0.2)])),
    ("tax-revenue", "dsj", "地方税收收入", "Local tax revenue", [A[5], "ECON"], ["税收"], "MONTHLY", "open",
     "conditional",
     monthly([("税收收入(亿元)", 70, 0.15)])),
    ("forestry-parks", "lyylj", "城市公园名录", "City parks", [A[11], "ENVI"], ["公园", "绿地"], "ANNUAL", "open",
     "share", parking),
]


def _districts(session: Session) -> list[tuple[str, str]]:
    return [(o.code, o.name_zh) for o in identity.list_organisations(session) if o.kind in ("district", "zone")]


def load(session: Session, ctx: AppContext) -> None:
    """Create the demo catalogue (datasets that already exist are left as they are)."""
    existing = set(session.scalars(select(Dataset.name)))
    entries = list(CATALOGUE)
    for code, name in _districts(session):
        entries.append((f"{code}-parking", code, f"{name}公共停车场名录", f"Public car parks, {code}", [A[10], "TRAN"],
                        ["停车场", name], "MONTHLY", "open", "share", lambda rng, n=name: parking(rng, n)))
        entries.append((f"{code}-schools", code, f"{name}中小学校分布", f"Schools, {code}", [A[7], "EDUC"],
                        ["学校", name], "ANNUAL", "open", "share", lambda rng, n=name: schools(rng, n)))
    for i, (name, org, title_zh, title_en, themes, keywords, freq, opening, sharing, build) in enumerate(entries):
        if name in existing:
            continue
        reader = service.Reader(actor=Actor(username="demo", org_code=org, role="department_staff"),
                                scopes=frozenset({service.PUBLISH}))
        rng = random.Random(name)
        description = (f"【演示数据】{title_zh}。由{_org_name(session, org)}按{_freq_zh(freq)}更新，"
                       "数据由程序按合理分布生成，仅供演示，不代表真实情况。")
        fields = DatasetFields(
            name=name, title_zh=title_zh, title_en=title_en, description_zh=description,
            description_en=f"[Demo data] {title_en}. Generated from plausible distributions; not real figures.",
            org_code=org, themes=themes, keywords=keywords, licence="CC-BY-4.0" if i % 7 else "CC0-1.0",
            frequency=freq, spatial="成都市", temporal_start=date(2015, 1, 1), contact_name=_org_name(session, org),
            contact_email=f"opendata@{org}.chengdu.example.cn", opening=opening, sharing=sharing,
            grade=2 if opening != "open" else 1)
        ds = service.create_dataset(session, reader, fields, demo=True)
        if build is not None:
            header, rows = build(rng)
            service.add_resource(session, reader, ds, ResourceFields(name=f"{title_zh}（CSV）", kind="file"),
                                 upload=(f"{name}.csv", _csv(header, rows, gbk=i % 5 == 0)))
        service.add_resource(session, reader, ds, ResourceFields(
            name="数据说明", kind="documentation", format="HTML",
            url=f"https://data.chengdu.example.cn/docs/{name}"))
        service.publish_dataset(session, reader, ds, note="演示数据首次发布")


def _csv(header: list[str], rows: list[list[object]], gbk: bool) -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue().encode("gb18030" if gbk else "utf-8")  # some departments still export GBK


def _org_name(session: Session, code: str) -> str:
    return identity.get_organisation(session, code).name_zh


def _freq_zh(code: str) -> str:
    from cityplus.modules.opendata.vocab import FREQUENCIES

    return FREQUENCIES[code][0].zh
