"""ROS time helpers (the one stamp <-> ns conversion) and small rclpy helpers shared by nodes,
tests and benchmarks (imports rclpy lazily)."""

from __future__ import annotations

import time
from typing import Any, Callable


def stamp_to_ns(stamp: Any) -> int:
    """builtin_interfaces/Time -> integer nanoseconds."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def ns_to_stamp(ns: int, stamp: Any | None = None) -> Any:
    """Integer nanoseconds -> builtin_interfaces/Time (filled in place if given)."""
    if stamp is None:
        from builtin_interfaces.msg import Time

        stamp = Time()
    if ns < 0:
        raise ValueError(f"negative time {ns} ns cannot be a ROS stamp")
    stamp.sec, stamp.nanosec = divmod(int(ns), 1_000_000_000)
    return stamp


def spin_until(executor: Any, predicate: Callable[[], bool], timeout_s: float,
               step_s: float = 0.01) -> bool:
    """Spin ``executor`` until ``predicate()`` is true or ``timeout_s`` passes; returns the predicate."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        executor.spin_once(timeout_sec=step_s)
    return bool(predicate())
