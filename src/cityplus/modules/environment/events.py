"""Events published by the environment module (for push subscriptions and other modules to react to)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from cityplus.core.events import Event, event_type


@event_type("environment.weather_warning_issued")
@dataclass(frozen=True, kw_only=True)
class WeatherWarningIssued(Event):
    """市气象局 issued a warning signal (气象灾害预警信号发布); its WeatherAlert entity is `entity_id`."""

    entity_id: str
    signal: str
    level: str
    area_name: str
    valid_from: datetime
    valid_to: datetime


@event_type("environment.weather_warning_lifted")
@dataclass(frozen=True, kw_only=True)
class WeatherWarningLifted(Event):
    """A warning signal was lifted before it expired (预警信号解除)."""

    entity_id: str
    signal: str
    level: str
