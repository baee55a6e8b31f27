"""Node parameters: the one way to declare a node's parameters from its config dataclass, and
to read one node's block from a ROS 2 parameters file (imports rclpy lazily)."""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Mapping

from arvla_base.config import ConfigError, load_yaml

__all__ = ["PERCEPTION_NODE", "declare_config_parameters", "read_node_params"]

PERCEPTION_NODE = "arvla_perception"  # the perception node's name (its block in the parameters files)


def declare_config_parameters(node: Any, cls: type, help_: Mapping[str, str] | None = None, *,
                              writable: frozenset[str] = frozenset(),
                              dynamic_scalars: bool = False) -> dict[str, Any]:
    """Declare one parameter per field of config dataclass ``cls`` and return their values, for
    ``arvla_base.config.from_dict``: the one way every arvla node declares its parameters.

    The description is ``help_[name]`` when given (then in ``help_``'s order), else the field's
    ``metadata["help"]`` (``config.param_field``). Read-only except the names in ``writable``.
    Float fields are dynamically typed so that a params file's ``10`` works like ``10.0``
    (``dynamic_scalars``: every non-list field), the config then checks the type and names the
    key. A field whose default is an empty list is declared by type (an empty list has none):
    left unset it reads as ``[]``. List values come back as lists.
    """
    import typing

    from rcl_interfaces.msg import ParameterDescriptor
    from rclpy.exceptions import ParameterUninitializedException
    from rclpy.parameter import Parameter

    array_types = {str: Parameter.Type.STRING_ARRAY, float: Parameter.Type.DOUBLE_ARRAY,
                   int: Parameter.Type.INTEGER_ARRAY, bool: Parameter.Type.BOOL_ARRAY}
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for name in (help_ if help_ is not None else fields):
        field = fields[name]
        default = _default_of(field)
        is_list = isinstance(default, list)
        descriptor = ParameterDescriptor(
            description=help_[name] if help_ is not None else field.metadata["help"],
            read_only=name not in writable,
            dynamic_typing=(not is_list) if dynamic_scalars else hints[name] is float)
        if is_list and not default:
            (item,) = typing.get_args(hints[name])
            node.declare_parameter(name, array_types[item], descriptor)
            try:
                values[name] = list(node.get_parameter(name).value)
            except ParameterUninitializedException:
                values[name] = []
        else:
            value = node.declare_parameter(name, default, descriptor).value
            values[name] = list(value) if is_list else value
    return values


def _default_of(field: dataclasses.Field[Any]) -> Any:
    if field.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return field.default_factory()  # type: ignore[misc]
    return field.default


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
