"""Events of the open-data module."""

from __future__ import annotations

from dataclasses import dataclass

from cityplus.core.events import Event, event_type


@event_type("opendata.dataset_published")
@dataclass(frozen=True, kw_only=True)
class DatasetPublished(Event):
    """A dataset was published, or a new version of a published dataset was (数据集发布)."""

    dataset_id: str
    name: str
    org_code: str
    version: int
