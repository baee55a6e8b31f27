"""The perception node's ROS-free machinery: a single-slot latest-frame buffer and statistics.

Why a single slot: the backbone is slower than the camera (1-10 Hz vs 15-60 fps). A queue would
make every prefix older than the last; the expert wants the newest frame, so a new frame simply
replaces the one still waiting, and that replacement is counted as a dropped frame.
"""

from __future__ import annotations

import collections
import threading
from dataclasses import dataclass
from typing import Generic, TypeVar

import numpy as np

__all__ = ["LatestSlot", "PerceptionStats", "StatsSnapshot"]

T = TypeVar("T")


class LatestSlot(Generic[T]):
    """Holds at most one item; ``put`` replaces a waiting item, ``take`` blocks until one is there."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: T | None = None
        self._closed = False
        self.dropped = 0  # items replaced before anyone took them

    def put(self, item: T) -> bool:
        """Store ``item``; returns True when it replaced a waiting (now dropped) item."""
        with self._cond:
            replaced = self._item is not None
            if replaced:
                self.dropped += 1
            self._item = item
            self._cond.notify()
            return replaced

    def take(self, timeout: float | None = None) -> T | None:
        """The waiting item (removed from the slot), or None after ``timeout`` s or when closed."""
        with self._cond:
            self._cond.wait_for(lambda: self._item is not None or self._closed, timeout=timeout)
            item, self._item = self._item, None
            return item

    def close(self) -> None:
        """Wake every waiting ``take`` (they return None from now on when the slot is empty)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed


@dataclass(frozen=True)
class StatsSnapshot:
    received: int
    published: int
    dropped: int
    errors: int
    rate_hz: float          # published prefixes per second over the last window
    latency_p50_s: float    # compute_stamp - image stamp (nan when nothing published yet)
    latency_max_s: float
    inference_p50_s: float  # wall time of decode + backbone
    window_s: float


class PerceptionStats:
    """Thread-safe counters + a window of latencies, read by the diagnostics timer."""

    def __init__(self, window: int = 100) -> None:
        self._lock = threading.Lock()
        self.received = 0
        self.published = 0
        self.errors = 0
        self._latency: collections.deque[float] = collections.deque(maxlen=window)
        self._inference: collections.deque[float] = collections.deque(maxlen=window)
        self._last_published = 0
        self._last_time: float | None = None

    def frame_received(self) -> int:
        """Count a frame; returns its sequence number (1, 2, ...)."""
        with self._lock:
            self.received += 1
            return self.received

    def error(self) -> None:
        with self._lock:
            self.errors += 1

    def prefix_published(self, latency_s: float, inference_s: float) -> None:
        with self._lock:
            self.published += 1
            self._latency.append(latency_s)
            self._inference.append(inference_s)

    def snapshot(self, now_s: float, dropped: int) -> StatsSnapshot:
        """Counters now, and the publish rate since the previous snapshot (monotonic ``now_s``)."""
        with self._lock:
            window = 0.0 if self._last_time is None else max(now_s - self._last_time, 1e-9)
            rate = (self.published - self._last_published) / window if window > 0 else 0.0
            self._last_time, self._last_published = now_s, self.published
            lat = np.asarray(self._latency, dtype=np.float64)
            inf = np.asarray(self._inference, dtype=np.float64)
            return StatsSnapshot(
                received=self.received, published=self.published, dropped=dropped,
                errors=self.errors, rate_hz=rate,
                latency_p50_s=float(np.median(lat)) if lat.size else float("nan"),
                latency_max_s=float(lat.max()) if lat.size else float("nan"),
                inference_p50_s=float(np.median(inf)) if inf.size else float("nan"),
                window_s=window)
