"""Node parameters: the one way to declare a node's parameters from its config dataclass, and
to read one node's block from a ROS 2 parameters file (imports rclpy lazily)."""

from __future__ import annotations

import os
from typing import Any

from arvla_base.config import ConfigError, load_yaml

__all__ = ["PERCEPTION_NODE", "declare_config_parameters", "read_node_params"]

PERCEPTION_NODE = "arvla_perception"  # the perception node's name (its block in the parameters files)


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


def read_node_params(path: str | os.PathLike[str], node: str = PERCEPTION_NODE) -> dict[str, Any]:
    """``node``'s parameters in a ROS 2 parameters file: the ``ros__parameters`` of the blocks
    ``/**``, ``node`` and ``/<namespace>/node``, later blocks winning; a file without
    ``ros__parameters`` blocks is read as the plain mapping of parameters."""
    data = load_yaml(path)
    blocks = {k: v for k, v in data.items() if isinstance(v, dict) and "ros__parameters" in v}
    if not blocks:
        return dict(data)
    params: dict[str, Any] = {}
    for key, block in blocks.items():
        if key == "/**" or str(key).rstrip("/").split("/")[-1] == node:
            if not isinstance(block["ros__parameters"], dict):
                raise ConfigError(f"{path}: {key}.ros__parameters must be a mapping")
            params.update(block["ros__parameters"])
    return params
