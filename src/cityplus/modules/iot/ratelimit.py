"""Per-device rate limits (token buckets): a runaway device is refused instead of swamping the platform."""

from __future__ import annotations

import threading
import time
from collections.abc import Hashable

MAX_KEYS = 100_000  # bound memory: past it the buckets start afresh (every device gets its burst again)
REPORT_EVERY = 60.0  # seconds between dead letters about one throttled device


class RateLimiter:
    """`rate` messages a second per key, with bursts up to `burst`; thread-safe (MQTT worker, HTTP threads)."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate, self.burst = rate, burst
        self._buckets: dict[Hashable, tuple[float, float]] = {}
        self._reported: dict[Hashable, float] = {}
        self._lock = threading.Lock()

    def allow(self, key: Hashable) -> bool:
        now = time.monotonic()
        with self._lock:
            if len(self._buckets) > MAX_KEYS:
                self._buckets.clear()
                self._reported.clear()
            tokens, last = self._buckets.get(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            allowed = tokens >= 1
            self._buckets[key] = (tokens - 1 if allowed else tokens, now)
            return allowed

    def report_due(self, key: Hashable) -> bool:
        """True at most once a minute per key: when a refusal should be filed as a dead letter."""
        now = time.monotonic()
        with self._lock:
            if now - self._reported.get(key, -REPORT_EVERY) < REPORT_EVERY:
                return False
            self._reported[key] = now
            return True
