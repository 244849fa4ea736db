"""Working-day calendar of mainland China (工作日历): weekends, public holidays and make-up working days (调休).

The days come from `core/data/workdays_cn.json` (the State Council's yearly notices; see the file's comment for
the source and how to add a year). For a year the file does not cover, only weekends are days off and
`WorkdayCalendar.covers()` says so, so callers can warn rather than silently miscount.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, timedelta
from functools import lru_cache
from importlib.resources import files


@dataclass(frozen=True)
class WorkdayCalendar:
    """Which dates are working days: Monday–Friday, minus holidays, plus make-up working days."""

    holidays: frozenset[date]
    workdays: frozenset[date]
    years: frozenset[int]

    def covers(self, year: int) -> bool:
        """Whether the holiday arrangement of `year` is known."""
        return year in self.years

    def is_workday(self, day: date) -> bool:
        """Whether `day` is a working day (工作日)."""
        if day in self.workdays:
            return True
        if day in self.holidays:
            return False
        return day.weekday() < 5

    def workdays_between(self, start: date, end: date) -> int:
        """Working days in (start, end]: how many working days from `start` until `end` arrives.

        Negative when `end` is before `start` (the working days already passed since `end`).
        """
        if end < start:
            return -self.workdays_between(end, start)
        count = 0
        day = start + timedelta(days=1)
        while day <= end:
            if self.is_workday(day):
                count += 1
            day += timedelta(days=1)
        return count

    def within_workdays(self, start: date, end: date, n: int) -> bool:
        """Whether `end` comes at most `n` working days after `start` (workdays_between(start, end) <= n).

        Stops counting once past `n`, so deadlines far ahead cost a few steps, not one per day.
        """
        if end <= start:
            return True
        count = 0
        day = start + timedelta(days=1)
        while day <= end:
            if self.is_workday(day):
                count += 1
                if count > n:
                    return False
            day += timedelta(days=1)
        return True

    def add_workdays(self, start: date, n: int) -> date:
        """The date `n` working days after `start` (before it when n is negative)."""
        step = 1 if n >= 0 else -1
        day, left = start, abs(n)
        while left:
            day += timedelta(days=step)
            if self.is_workday(day):
                left -= 1
        return day


@lru_cache(maxsize=1)
def china() -> WorkdayCalendar:
    """The packaged calendar of mainland China."""
    raw = json.loads(files("cityplus.core").joinpath("data/workdays_cn.json").read_text("utf-8"))
    holidays: set[date] = set()
    workdays: set[date] = set()
    for year in raw["years"].values():
        holidays.update(date.fromisoformat(d) for d in year["holidays"])
        workdays.update(date.fromisoformat(d) for d in year["workdays"])
    return WorkdayCalendar(frozenset(holidays), frozenset(workdays), frozenset(int(y) for y in raw["years"]))
