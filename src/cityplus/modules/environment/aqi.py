"""Air quality index (空气质量指数, AQI) per HJ 633—2026 and HJ 633—2012: pure computation, no I/O.

`compute()` takes concentrations (µg/m³; CO in mg/m³) of any subset of the seven items, an edition and a period
(hourly real-time report 实时报, or daily report 日报) and returns each item's IAQI, the AQI, its level, category,
colour and the primary pollutant(s). Arithmetic is exact (fractions), so a value on a breakpoint gives exactly the
breakpoint's IAQI and rounding never suffers from binary floating point.

What the editions say, and what we chose where they are silent, is written in docs/modules/environment.md.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_HALF_EVEN, Decimal
from fractions import Fraction
from typing import Literal

Edition = Literal["2026", "2012"]
Period = Literal["hourly", "daily"]
Averaging = Literal["1h", "8h", "24h"]

EDITIONS: tuple[Edition, ...] = ("2026", "2012")
PERIODS: tuple[Period, ...] = ("hourly", "daily")
EDITION_2026_FROM = date(2026, 3, 1)  # HJ 633—2026 in force; earlier data is assessed with HJ 633—2012

# The seven items, in the order reports list them. Units: µg/m³, CO mg/m³.
POLLUTANTS: tuple[str, ...] = ("so2", "no2", "co", "o3", "o3_8h", "pm10", "pm25")
UNITS = {"so2": "µg/m³", "no2": "µg/m³", "co": "mg/m³", "o3": "µg/m³", "o3_8h": "µg/m³", "pm10": "µg/m³",
         "pm25": "µg/m³"}
MAX_CONCENTRATION = 100_000.0  # far above any table; beyond it an input is a unit mistake, not air

IAQI_STEPS = (0, 50, 100, 150, 200, 300, 400, 500)

# Breakpoints (BP) at IAQI_STEPS; None where the table has none (footnotes b and c).
_BP: dict[tuple[str, str], tuple[float | None, ...]] = {
    ("so2", "24h"): (0, 50, 150, 475, 800, 1600, 2100, 2620),
    ("so2", "1h"): (0, 150, 500, 650, 800, None, None, None),
    ("no2", "24h"): (0, 40, 80, 180, 280, 565, 750, 940),
    ("no2", "1h"): (0, 100, 200, 700, 1200, 2340, 3090, 3840),
    ("co", "24h"): (0, 2, 4, 14, 24, 36, 48, 60),
    ("co", "1h"): (0, 5, 10, 35, 60, 90, 120, 150),
    ("o3", "8h"): (0, 100, 160, 215, 265, 800, None, None),
    ("o3", "1h"): (0, 160, 200, 300, 400, 800, 1000, 1200),
    ("pm10", "24h"): (0, 50, 150, 250, 350, 420, 500, 600),
    ("pm25", "24h"): (0, 35, 75, 115, 150, 250, 350, 500),
}
# HJ 633—2026 lowers the IAQI-100 breakpoint of the particulates (GB 3095—2026's tighter 24-hour limits).
_BP_2026 = {("pm10", "24h"): (0, 50, 120, 250, 350, 420, 500, 600),
            ("pm25", "24h"): (0, 35, 60, 115, 150, 250, 350, 500)}


def breakpoints(pollutant: str, averaging: Averaging, edition: Edition) -> tuple[float | None, ...]:
    """The concentration breakpoints of one item at IAQI 0, 50, 100, 150, 200, 300, 400, 500."""
    species = "o3" if pollutant == "o3_8h" else pollutant
    key = (species, averaging)
    if edition == "2026" and key in _BP_2026:
        return _BP_2026[key]
    return _BP[key]


def averaging_of(pollutant: str, period: Period) -> Averaging:
    """Which averaging time an input stands for, and so which breakpoint column applies.

    Hourly (real-time): SO2, NO2, CO and O3 are 1-hour means; PM10 and PM2.5 are evaluated against the 24-hour
    breakpoints (the only ones the table has); `o3_8h` is the 8-hour moving mean. Daily: 24-hour means, `o3` the
    daily maximum 1-hour mean and `o3_8h` the daily maximum 8-hour moving mean.
    """
    if pollutant == "o3_8h":
        return "8h"
    if pollutant == "o3":
        return "1h"
    if pollutant in ("pm10", "pm25"):
        return "24h"
    return "1h" if period == "hourly" else "24h"


class AqiInputError(ValueError):
    """An input the index cannot be computed from; `field` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class Category:
    """One of the six AQI levels (空气质量指数级别) with its category and colour."""

    level: int  # 1–6
    level_zh: str
    category_zh: str
    category_en: str
    category_key: str  # stable identifier, also written to airQualityLevel
    colour_zh: str
    colour_en: str
    rgb: tuple[int, int, int]
    aqi_low: int
    aqi_high: int | None

    @property
    def hex(self) -> str:
        return "#{:02x}{:02x}{:02x}".format(*self.rgb)


CATEGORIES: tuple[Category, ...] = (
    Category(1, "一级", "优", "excellent", "excellent", "绿色", "green", (0, 228, 0), 0, 50),
    Category(2, "二级", "良", "good", "good", "黄色", "yellow", (255, 255, 0), 51, 100),
    Category(3, "三级", "轻度污染", "lightly polluted", "lightlyPolluted", "橙色", "orange", (255, 126, 0), 101, 150),
    Category(4, "四级", "中度污染", "moderately polluted", "moderatelyPolluted", "红色", "red", (255, 0, 0), 151, 200),
    Category(5, "五级", "重度污染", "heavily polluted", "heavilyPolluted", "紫色", "purple", (153, 0, 76), 201, 300),
    Category(6, "六级", "严重污染", "severely polluted", "severelyPolluted", "褐红色", "maroon", (126, 0, 35), 301,
             None),
)


def category(aqi: int) -> Category:
    """The level of an AQI value (both editions share the table)."""
    if aqi < 0:
        raise AqiInputError("aqi", "an AQI is never negative")
    for c in CATEGORIES:
        if c.aqi_high is None or aqi <= c.aqi_high:
            return c
    raise AssertionError("unreachable")  # pragma: no cover - the last category is open-ended


@dataclass(frozen=True)
class SubIndex:
    """The individual index (空气质量分指数, IAQI) of one item."""

    pollutant: str
    concentration: float  # as given
    used: float | None  # the concentration the IAQI was computed from (after the edition's input rounding)
    averaging: Averaging
    iaqi: int | None  # None when the edition computes none from this value (see `note`)
    note: str | None = None  # a footnote that applied: so2_1h_above_800, o3_8h_above_800, above_scale


@dataclass(frozen=True)
class AqiResult:
    """AQI of one set of concentrations under one edition and period."""

    edition: Edition
    period: Period
    sub_indices: tuple[SubIndex, ...]
    aqi: int | None  # None when no item gave an IAQI
    category: Category | None
    primary_pollutants: tuple[str, ...]  # 首要污染物: the items with the largest IAQI when AQI > 50
    exceeding_pollutants: tuple[str, ...]  # 超标污染物 (2012 only): IAQI > 100

    def iaqi(self, pollutant: str) -> int | None:
        for s in self.sub_indices:
            if s.pollutant == pollutant:
                return s.iaqi
        raise KeyError(pollutant)


def edition_for(day: date) -> Edition:
    """The edition that assesses data of a day: HJ 633—2026 from 2026-03-01, HJ 633—2012 before."""
    return "2026" if day >= EDITION_2026_FROM else "2012"


def gbt8170(value: float, places: int) -> Fraction:
    """Round a number to `places` decimals per GB/T 8170 (数值修约: 四舍六入五成双, i.e. half to even)."""
    q = Decimal(repr(value)).quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_EVEN)
    return Fraction(q)


def _round_index(raw: Fraction | float, edition: Edition) -> int:
    if edition == "2026":
        return max(1, math.ceil(raw))  # 向上进位取整数; the 2026 scale starts at 1
    # HJ 633—2012 fixes no rounding rule: integers per GB/T 8170 (half to even), as any rounding in the standards.
    return round(raw)  # halves to even (exactly: a value near a half is a Fraction here, see _interpolate)


def _segment(c: float, bps: tuple[float | None, ...]) -> int | None:
    """Index i of the segment BP[i-1] < c ≤ BP[i] (c = 0 is in the first); None beyond the last defined BP."""
    for i in range(1, len(bps)):
        hi = bps[i]
        if hi is None:
            return None
        if c <= hi:
            return i
    return None


def _interpolate(c: Fraction | float, bps: tuple[float | None, ...]) -> tuple[Fraction | float | None, bool]:
    """Formula (1) of HJ 633 on the nearest breakpoints; (None, True) beyond the last one defined.

    Computed in floating point, and again exactly when the result lies within 1e-6 of an integer or a half, where
    binary rounding could decide a ceiling or a half-even rounding; elsewhere a float error (~1e-13) cannot.
    """
    i = _segment(float(c), bps)
    if i is None:
        return None, True
    lo, hi = bps[i - 1], bps[i]
    assert lo is not None and hi is not None
    i_lo, i_hi = IAQI_STEPS[i - 1], IAQI_STEPS[i]
    approx = (i_hi - i_lo) / (hi - lo) * (float(c) - lo) + i_lo
    twice = approx * 2
    if abs(twice - round(twice)) > 2e-6:
        return approx, False
    # Breakpoints are integers, so an integral concentration needs one rational number, not Fraction arithmetic.
    lo_i, span = int(lo), int(hi) - int(lo)
    if isinstance(c, float) and c.is_integer():
        return Fraction(i_lo * span + (i_hi - i_lo) * (int(c) - lo_i), span), False
    exact = c if isinstance(c, Fraction) else Fraction(repr(c))
    return i_lo + Fraction(i_hi - i_lo, span) * (exact - lo_i), False


def check_concentration(pollutant: str, value: object) -> float:
    """A concentration of one item as a float: a finite number, ≥ 0, plausible; AqiInputError otherwise."""
    if pollutant not in POLLUTANTS:
        raise AqiInputError(pollutant, f"unknown item; use one of {', '.join(POLLUTANTS)}")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise AqiInputError(pollutant, "a concentration must be a number")
    v = float(value)
    if math.isnan(v) or math.isinf(v):
        raise AqiInputError(pollutant, "a concentration must be a finite number")
    if v < 0:
        raise AqiInputError(pollutant, "a concentration is never negative")
    if v > MAX_CONCENTRATION:
        raise AqiInputError(pollutant, f"{v:g} {UNITS[pollutant]} is not plausible; check the unit "
                                       f"(CO in mg/m³, the others in µg/m³)")
    return v


def _sub_index(pollutant: str, value: float, edition: Edition, period: Period,
               others: Mapping[str, float]) -> tuple[SubIndex, Fraction | float | None]:
    averaging = averaging_of(pollutant, period)
    used: Fraction | float = value
    if edition == "2026" and period == "daily":
        # HJ 633—2026: daily concentrations are rounded to integers (CO to one decimal) before use.
        used = gbt8170(value, 1 if pollutant == "co" else 0)
    raw, beyond = _interpolate(used, breakpoints(pollutant, averaging, edition))
    note = None
    if beyond and pollutant == "so2" and averaging == "1h":
        # Footnote (b): SO2 1-hour mean above 800 µg/m³.
        note = "so2_1h_above_800"
        if edition == "2026":
            raw = Fraction(200)
        elif "so2_24h" in others:
            raw, _ = _interpolate(others["so2_24h"], breakpoints("so2", "24h", edition))
            if raw is None:  # the 24-hour value is beyond its own table too
                raw = Fraction(500)
    elif beyond and pollutant == "o3_8h":
        # Footnote (c): O3 8-hour mean above 800 µg/m³.
        note = "o3_8h_above_800"
        if edition == "2026":
            raw = Fraction(300)
        elif "o3" in others:
            raw, _ = _interpolate(others["o3"], breakpoints("o3", "1h", edition))
            if raw is None:
                raw = Fraction(500)
    elif beyond:
        note = "above_scale"  # the index tops out at 500
        raw = Fraction(500)
    sub = SubIndex(pollutant=pollutant, concentration=value, used=float(used), averaging=averaging,
                   iaqi=None if raw is None else min(500, _round_index(raw, edition)), note=note)
    return sub, raw


def compute(concentrations: Mapping[str, object], *, edition: Edition, period: Period,
            so2_24h: float | None = None) -> AqiResult:
    """IAQI of each given item, AQI, level, category and primary pollutant(s).

    `so2_24h`: the 24-hour SO2 mean, used by HJ 633—2012 in an hourly report when the 1-hour SO2 mean is above
    800 µg/m³ (footnote b); without it that item has no IAQI. Raises AqiInputError naming a bad input.
    """
    if edition not in EDITIONS:
        raise AqiInputError("edition", f"unknown edition {edition!r}; use 2026 or 2012")
    if period not in PERIODS:
        raise AqiInputError("period", f"unknown period {period!r}; use hourly or daily")
    values = {p: check_concentration(p, v) for p, v in concentrations.items() if v is not None}
    if not values:
        raise AqiInputError("pollutants", f"give at least one concentration ({', '.join(POLLUTANTS)})")
    if edition == "2026" and period == "daily" and "o3" in values:
        raise AqiInputError("o3", "HJ 633—2026 daily reports assess ozone by its daily maximum 8-hour mean "
                                  "(o3_8h); 1-hour limits are used only in hourly reports")
    others: dict[str, float] = dict(values)
    if so2_24h is not None:
        others["so2_24h"] = check_concentration("so2", so2_24h)
    subs = [_sub_index(p, values[p], edition, period, others)[0] for p in POLLUTANTS if p in values]
    indexed = [s for s in subs if s.iaqi is not None]
    if not indexed:
        return AqiResult(edition, period, tuple(subs), None, None, (), ())
    aqi = max(s.iaqi for s in indexed if s.iaqi is not None)
    primary = tuple(s.pollutant for s in indexed if s.iaqi == aqi) if aqi > 50 else ()
    exceeding = tuple(s.pollutant for s in indexed if s.iaqi is not None and s.iaqi > 100) \
        if edition == "2012" else ()
    return AqiResult(edition, period, tuple(subs), aqi, category(aqi), primary, exceeding)
