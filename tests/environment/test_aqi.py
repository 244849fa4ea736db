"""AQI per HJ 633—2026 and HJ 633—2012 (pure computation): worked examples, every breakpoint edge, footnotes."""

from __future__ import annotations

import math
from datetime import date
from fractions import Fraction

import pytest

from cityplus.modules.environment import aqi
from cityplus.modules.environment.aqi import AqiInputError, compute

STEPS = (0, 50, 100, 150, 200, 300, 400, 500)
# The tables as printed in the reference (Table 3 of HJ 633—2026, Table 1 of HJ 633—2012), None where empty.
TABLE = {
    ("so2", "24h"): (0, 50, 150, 475, 800, 1600, 2100, 2620),
    ("so2", "1h"): (0, 150, 500, 650, 800, None, None, None),
    ("no2", "24h"): (0, 40, 80, 180, 280, 565, 750, 940),
    ("no2", "1h"): (0, 100, 200, 700, 1200, 2340, 3090, 3840),
    ("co", "24h"): (0, 2, 4, 14, 24, 36, 48, 60),
    ("co", "1h"): (0, 5, 10, 35, 60, 90, 120, 150),
    ("o3_8h", "8h"): (0, 100, 160, 215, 265, 800, None, None),
    ("o3", "1h"): (0, 160, 200, 300, 400, 800, 1000, 1200),
}
PM = {("pm10", "2012"): (0, 50, 150, 250, 350, 420, 500, 600), ("pm10", "2026"): (0, 50, 120, 250, 350, 420, 500, 600),
      ("pm25", "2012"): (0, 35, 75, 115, 150, 250, 350, 500), ("pm25", "2026"): (0, 35, 60, 115, 150, 250, 350, 500)}


def _cases():  # type: ignore[no-untyped-def]
    """(edition, period, pollutant, breakpoints) for every column of both tables."""
    for edition in ("2026", "2012"):
        for (p, avg), bps in TABLE.items():
            period = "daily" if avg == "24h" else "hourly"
            yield edition, period, p, bps
        for (p, ed), bps in PM.items():
            if ed == edition:
                yield edition, "hourly", p, bps


def _expected(edition: str, raw: Fraction) -> int:
    return max(1, math.ceil(raw)) if edition == "2026" else round(raw)


EDGES = [(e, per, p, i, bp) for e, per, p, bps in _cases() for i, bp in enumerate(bps) if bp is not None]


@pytest.mark.parametrize(("edition", "period", "pollutant", "i", "bp"), EDGES,
                         ids=[f"{e}-{per}-{p}-{bp}" for e, per, p, _, bp in EDGES])
def test_every_breakpoint_edge(edition: str, period: str, pollutant: str, i: int, bp: float) -> None:
    """Exactly at a breakpoint: exactly its IAQI. Just above: the next segment (or the footnote / cap)."""
    at = compute({pollutant: bp}, edition=edition, period=period).iaqi(pollutant)  # type: ignore[arg-type]
    assert at == (STEPS[i] if STEPS[i] > 0 or edition == "2012" else 1)
    # Daily values under 2026 are rounded to integers (CO 0.1) first, so "just above" is one unit there.
    delta = Fraction(1, 10) if pollutant == "co" else (Fraction(1) if edition == "2026" and period == "daily"
                                                       else Fraction(1, 100))
    above = float(Fraction(bp) + delta)
    got = compute({pollutant: above}, edition=edition, period=period)  # type: ignore[arg-type]
    bps = dict(_cases_index())[(edition, period, pollutant)]
    nxt = bps[i + 1] if i + 1 < len(bps) else None
    if nxt is not None:
        raw = STEPS[i] + Fraction(STEPS[i + 1] - STEPS[i]) / (Fraction(nxt) - Fraction(bp)) * delta
        assert got.iaqi(pollutant) == _expected(edition, raw)
        if edition == "2026":
            assert got.iaqi(pollutant) > STEPS[i]  # rounded up: never the lower level's index
    elif i + 1 == len(bps):  # beyond the 500 breakpoint
        assert got.iaqi(pollutant) == 500 and got.sub_indices[0].note == "above_scale"
    elif pollutant == "so2":  # footnote (b)
        assert got.sub_indices[0].note == "so2_1h_above_800"
        assert got.iaqi("so2") == (200 if edition == "2026" else None)
    elif pollutant == "o3_8h":  # footnote (c)
        assert got.sub_indices[0].note == "o3_8h_above_800"
        assert got.iaqi("o3_8h") == (300 if edition == "2026" else None)
    else:
        raise AssertionError(f"no rule for {pollutant} above {bp}")


def _cases_index():  # type: ignore[no-untyped-def]
    return (((e, per, p), bps) for e, per, p, bps in _cases())


def test_worked_examples_of_the_reference() -> None:
    """PM2.5 daily 75 → 100 (2012) / 114 (2026); PM10 daily 150 → 100 (2012) / 112 (2026)."""
    old = compute({"pm25": 75, "pm10": 150}, edition="2012", period="daily")
    new = compute({"pm25": 75, "pm10": 150}, edition="2026", period="daily")
    assert (old.iaqi("pm25"), old.iaqi("pm10"), old.aqi) == (100, 100, 100)
    assert (new.iaqi("pm25"), new.iaqi("pm10"), new.aqi) == (114, 112, 114)
    assert old.category is not None and old.category.category_zh == "良" and old.category.level_zh == "二级"
    assert old.primary_pollutants == ("pm10", "pm25")  # a tie names both
    assert new.category is not None and new.category.category_zh == "轻度污染"
    assert new.category.colour_en == "orange" and new.category.hex == "#ff7e00"
    assert new.primary_pollutants == ("pm25",)


def test_hand_computed_examples() -> None:
    # 2012 hourly: SO2 700 → (200−150)/(800−650)·50 + 150 = 166.67 → 167; NO2 150 → 75; CO 12 → 100 + 50·2/25 = 104
    r = compute({"so2": 700, "no2": 150, "co": 12}, edition="2012", period="hourly")
    assert [(s.pollutant, s.iaqi) for s in r.sub_indices] == [("so2", 167), ("no2", 75), ("co", 104)]
    assert r.aqi == 167 and r.primary_pollutants == ("so2",) and r.exceeding_pollutants == ("so2", "co")
    # 2012 has no rounding rule: GB/T 8170 rounds halves to even (PM2.5 37 → 52.5 → 52; 41 → 57.5 → 58)
    assert compute({"pm25": 37}, edition="2012", period="daily").aqi == 52
    assert compute({"pm25": 41}, edition="2012", period="daily").aqi == 58
    # 2026 rounds up: PM2.5 37 (35–60) → 54 exactly; 36 → 52; O3 8h 161 → 100 + 50/55 → 101
    assert compute({"pm25": 37}, edition="2026", period="hourly").aqi == 54
    assert compute({"pm25": 36}, edition="2026", period="hourly").aqi == 52
    assert compute({"o3_8h": 161}, edition="2026", period="daily").aqi == 101
    # 2026 drops "exceeding pollutants"
    assert compute({"so2": 700}, edition="2026", period="hourly").exceeding_pollutants == ()


def test_2026_daily_inputs_are_rounded_first() -> None:
    """Daily concentrations are rounded to integers (CO to 0.1) before use; GB/T 8170 rounds halves to even."""
    def daily(p: str, v: float) -> aqi.SubIndex:
        return compute({p: v}, edition="2026", period="daily").sub_indices[0]

    assert (daily("pm25", 60.4).used, daily("pm25", 60.4).iaqi) == (60, 100)
    assert daily("pm25", 60.5).used == 60 and daily("pm25", 61.5).used == 62
    assert daily("pm25", 61.5).iaqi == 102  # ceil(100 + 50/55·2) = ceil(101.8)
    assert daily("co", 4.05).used == 4.0 and daily("co", 4.15).used == 4.2 and daily("co", 4.15).iaqi == 101
    # hourly values and the 2012 edition are used as given
    assert compute({"pm25": 60.4}, edition="2026", period="hourly").aqi == 101
    assert compute({"pm25": 75.4}, edition="2012", period="daily").sub_indices[0].used == 75.4


def test_footnote_b_so2_hourly_above_800() -> None:
    assert compute({"so2": 800}, edition="2012", period="hourly").aqi == 200
    r = compute({"so2": 900, "pm25": 20}, edition="2012", period="hourly")
    assert r.iaqi("so2") is None and r.aqi == 29  # the 24-hour value is needed and was not given
    r = compute({"so2": 900}, edition="2012", period="hourly", so2_24h=150)
    assert r.iaqi("so2") == 100 and r.sub_indices[0].note == "so2_1h_above_800"
    assert compute({"so2": 5000}, edition="2026", period="hourly").aqi == 200
    assert compute({"so2": 5000}, edition="2012", period="hourly", so2_24h=3000).aqi == 500
    # daily SO2 uses the 24-hour column, which goes on to 2620
    assert compute({"so2": 900}, edition="2012", period="daily").aqi == round(200 + Fraction(100, 800) * 100)


def test_footnote_c_ozone_8h_above_800() -> None:
    r = compute({"o3_8h": 900, "o3": 300}, edition="2012", period="daily")
    assert r.iaqi("o3_8h") == 150 and r.iaqi("o3") == 150 and r.aqi == 150
    assert r.primary_pollutants == ("o3", "o3_8h")
    assert compute({"o3_8h": 900}, edition="2012", period="hourly").aqi is None
    r = compute({"o3_8h": 900}, edition="2026", period="hourly")
    assert r.aqi == 300 and r.category is not None and r.category.level == 5


def test_2026_daily_has_no_1h_ozone() -> None:
    with pytest.raises(AqiInputError) as exc:
        compute({"o3": 100}, edition="2026", period="daily")
    assert exc.value.field == "o3"
    assert compute({"o3": 160}, edition="2012", period="daily").aqi == 50  # daily maximum 1-hour O3 counts


def test_scale_starts_at_1_in_2026_and_0_in_2012() -> None:
    assert compute({"pm25": 0}, edition="2026", period="hourly").aqi == 1
    assert compute({"pm25": 0}, edition="2012", period="hourly").aqi == 0


@pytest.mark.parametrize(("value", "level", "zh", "en"), [
    (0, 1, "优", "excellent"), (50, 1, "优", "excellent"), (51, 2, "良", "good"), (100, 2, "良", "good"),
    (101, 3, "轻度污染", "lightly polluted"), (150, 3, "轻度污染", "lightly polluted"),
    (151, 4, "中度污染", "moderately polluted"), (200, 4, "中度污染", "moderately polluted"),
    (201, 5, "重度污染", "heavily polluted"), (300, 5, "重度污染", "heavily polluted"),
    (301, 6, "严重污染", "severely polluted"), (500, 6, "严重污染", "severely polluted")])
def test_category_edges(value: int, level: int, zh: str, en: str) -> None:
    c = aqi.category(value)
    assert (c.level, c.category_zh, c.category_en) == (level, zh, en)


def test_primary_pollutant_only_above_50() -> None:
    assert compute({"pm25": 35, "pm10": 50}, edition="2026", period="hourly").primary_pollutants == ()
    assert compute({"pm25": 36, "pm10": 50}, edition="2026", period="hourly").primary_pollutants == ("pm25",)


def test_edition_by_date() -> None:
    assert aqi.edition_for(date(2026, 2, 28)) == "2012"
    assert aqi.edition_for(date(2026, 3, 1)) == "2026"


@pytest.mark.parametrize(("values", "field"), [
    ({"pm25": -1}, "pm25"), ({"pm25": float("nan")}, "pm25"), ({"pm25": float("inf")}, "pm25"),
    ({"pm25": "12"}, "pm25"), ({"pm25": True}, "pm25"), ({"pm2.5": 10}, "pm2.5"), ({}, "pollutants"),
    ({"co": 1e9}, "co")])
def test_bad_input_names_the_field(values: dict[str, object], field: str) -> None:
    with pytest.raises(AqiInputError) as exc:
        compute(values, edition="2026", period="hourly")
    assert exc.value.field == field


def test_unknown_edition_or_period() -> None:
    with pytest.raises(AqiInputError, match="edition"):
        compute({"pm25": 1}, edition="2013", period="hourly")  # type: ignore[arg-type]
    with pytest.raises(AqiInputError, match="period"):
        compute({"pm25": 1}, edition="2026", period="weekly")  # type: ignore[arg-type]


def _oracle(pollutant: str, value: str, edition: str) -> int:
    """Formula (1) in exact arithmetic on a decimal string, with the edition's rounding (hourly, no footnotes)."""
    avg = aqi.averaging_of(pollutant, "hourly")
    bps = aqi.breakpoints(pollutant, avg, edition)  # type: ignore[arg-type]
    c = Fraction(value)
    for i in range(1, len(bps)):
        if c <= bps[i]:  # type: ignore[operator]
            raw = STEPS[i - 1] + Fraction(STEPS[i] - STEPS[i - 1]) / (Fraction(bps[i]) - bps[i - 1]) * (  # type: ignore[arg-type, operator]
                c - bps[i - 1])  # type: ignore[operator]
            return _expected(edition, raw)
    raise AssertionError("outside the table")


@pytest.mark.parametrize("edition", ["2026", "2012"])
@pytest.mark.parametrize("pollutant", ["no2", "co", "o3", "pm10", "pm25"])
def test_float_fast_path_matches_exact_arithmetic(edition: str, pollutant: str) -> None:
    """Every value on a 0.1 grid (0.01 for CO) up to the top of the table gives what exact arithmetic gives."""
    top = aqi.breakpoints(pollutant, aqi.averaging_of(pollutant, "hourly"), edition)[-1]  # type: ignore[arg-type]
    step = Fraction(1, 100) if pollutant == "co" else Fraction(1, 10)
    n = int(Fraction(top) / step)  # type: ignore[arg-type]
    for k in range(0, n + 1, 7 if n > 20000 else 1):
        text = str(float(k * step))
        got = compute({pollutant: float(text)}, edition=edition, period="hourly").iaqi(pollutant)  # type: ignore[arg-type]
        assert got == _oracle(pollutant, text, edition), (pollutant, text)
