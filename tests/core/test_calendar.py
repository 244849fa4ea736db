"""The working-day calendar: holidays and make-up working days of mainland China."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from cityplus.core.calendar import china


def test_national_day_2016_and_its_make_up_saturday() -> None:
    cal = china()
    assert all(not cal.is_workday(date(2016, 10, d)) for d in range(1, 8))  # 国庆 1–7 October
    assert cal.is_workday(date(2016, 10, 8)) and cal.is_workday(date(2016, 10, 9))  # 调休: Saturday and Sunday
    assert cal.is_workday(date(2016, 9, 30))
    # From Thursday 29 September, the next working days are Friday 30 September and Saturday 8 October.
    assert cal.workdays_between(date(2016, 9, 29), date(2016, 10, 8)) == 2
    assert cal.add_workdays(date(2016, 9, 29), 2) == date(2016, 10, 8)
    assert cal.add_workdays(date(2016, 10, 8), -2) == date(2016, 9, 29)
    assert cal.workdays_between(date(2016, 10, 8), date(2016, 9, 29)) == -2
    assert cal.within_workdays(date(2016, 9, 29), date(2016, 10, 8), 2)
    assert not cal.within_workdays(date(2016, 9, 28), date(2016, 10, 8), 2)
    assert cal.within_workdays(date(2016, 10, 9), date(2016, 10, 8), 0)  # already past


def test_plain_weeks_and_years_outside_the_data() -> None:
    cal = china()
    assert cal.workdays_between(date(2015, 3, 2), date(2015, 3, 9)) == 5  # Monday to Monday
    assert cal.covers(2015) and cal.covers(2017) and not cal.covers(2099)
    assert cal.is_workday(date(2099, 10, 1)) is (date(2099, 10, 1).weekday() < 5)


@pytest.mark.parametrize("year", range(2014, 2027))
def test_data_agrees_with_the_chinese_calendar_package(year: int) -> None:
    """Every day of each covered year matches an independently maintained table (chinese-calendar on PyPI)."""
    chinese_calendar = pytest.importorskip("chinese_calendar")
    cal = china()
    day = date(year, 1, 1)
    differing = []
    while day.year == year:
        if cal.is_workday(day) != chinese_calendar.is_workday(day):
            differing.append(day.isoformat())
        day += timedelta(days=1)
    assert differing == []
