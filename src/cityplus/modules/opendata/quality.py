"""Quality score (数据质量评分) of a dataset: nine checks a reader can see, each worth the same."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from cityplus.core.db import utcnow
from cityplus.modules.opendata.models import Dataset
from cityplus.modules.opendata.vocab import FREQUENCIES, OPEN_FORMATS, OPEN_LICENCES

MIN_DESCRIPTION = 30  # characters; a sentence or two in Chinese


@dataclass(frozen=True)
class Check:
    key: str
    passed: bool


@dataclass(frozen=True)
class Quality:
    score: int  # 0–100
    checks: tuple[Check, ...]


def quality(ds: Dataset, now: datetime | None = None) -> Quality:
    """Licence, description, temporal and spatial coverage, frequency, updated on time, open format,
    resources reachable (uploaded or loaded; links are not fetched here) and documentation."""
    now = now or utcnow()
    freq = FREQUENCIES.get(ds.frequency)
    on_time = False
    if freq is not None:
        days = freq[1]
        on_time = days is None or (now - ds.modified_at).days <= days
    reachable = bool(ds.resources) and all(
        (r.kind == "file" and r.size) or (r.kind in ("link", "api", "documentation") and r.url.startswith("https://"))
        for r in ds.resources)
    checks = (
        Check("licence", ds.licence in OPEN_LICENCES),
        Check("description", len(ds.description_zh.strip()) >= MIN_DESCRIPTION
              or len(ds.description_en.strip()) >= MIN_DESCRIPTION * 3),
        Check("temporal", ds.temporal_start is not None),
        Check("spatial", bool(ds.spatial.strip())),
        Check("frequency", freq is not None),
        Check("on_time", on_time),
        Check("open_format", any(r.format.upper() in OPEN_FORMATS for r in ds.resources)),
        Check("reachable", reachable),
        Check("documentation", any(r.kind == "documentation" for r in ds.resources)
              or any(f.get("label") for r in ds.resources for f in r.fields)),
    )
    return Quality(score=round(100 * sum(c.passed for c in checks) / len(checks)), checks=checks)
