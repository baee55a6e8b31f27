"""Small rclpy helpers shared by nodes, tests and benchmarks (imports rclpy lazily)."""

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


def declare_config_parameters(node: Any, cls: type, help_: dict[str, str], *,
                              writable: frozenset[str] = frozenset()) -> dict[str, Any]:
    """Declare one parameter per field of config dataclass ``cls`` (in ``help_``'s order, its
    text as the description) and return their values, for ``arvla.config.from_dict``.

    Read-only except the names in ``writable``; float fields are dynamically typed so that a
    params file's ``10`` works like ``10.0`` (the config then checks the type and names the key);
    list values come back as lists.
    """
    import typing

    from rcl_interfaces.msg import ParameterDescriptor

    defaults = cls()
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for name, help_text in help_.items():
        default = getattr(defaults, name)
        descriptor = ParameterDescriptor(description=help_text, read_only=name not in writable,
                                         dynamic_typing=hints[name] is float)
        value = node.declare_parameter(name, default, descriptor).value
        values[name] = list(value) if isinstance(default, list) else value
    return values


def spin_until(executor: Any, predicate: Callable[[], bool], timeout_s: float,
               step_s: float = 0.01) -> bool:
    """Spin ``executor`` until ``predicate()`` is true or ``timeout_s`` passes; returns the predicate."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        executor.spin_once(timeout_sec=step_s)
    return bool(predicate())
