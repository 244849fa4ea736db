"""Typed runtime state of one application instance (no loose dicts)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry

from cityplus.core.config import Settings
from cityplus.core.db import Database
from cityplus.core.modules import ModuleRegistry

if TYPE_CHECKING:
    from cityplus.core.events_bus import EventBus


@dataclass
class AppContext:
    """Everything a request handler, CLI command or lifecycle hook may need."""

    settings: Settings
    db: Database
    registry: ModuleRegistry
    bus: EventBus
    # Runtime state a module keeps between start() and stop(), keyed by module name.
    module_state: dict[str, Any] = field(default_factory=dict)
    # Prometheus collectors of this instance (served at /metrics); modules register their own on it.
    metrics: CollectorRegistry = field(default_factory=CollectorRegistry)
