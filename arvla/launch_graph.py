"""Read our ROS 2 launch files as data, so `arvla bringup` runs exactly what they describe.

launch / launch_ros are not installable from PyPI, so on such machines `arvla bringup` starts the
same graph in one process. To keep a single source of truth, it does not restate the graph: it
parses ``launch/*.launch.py`` (Python AST, never executed) into ``LaunchArgument`` and ``NodeSpec``
records. The subset understood is what our launch files use: ``DeclareLaunchArgument(name,
default_value=..., description=...)``, ``Node(package, executable, name, namespace, condition=
IfCondition(LaunchConfiguration(x)), parameters=[<file>, {param: LaunchConfiguration(x) | literal}])``,
``PathJoinSubstitution([FindPackageShare(pkg), ...])``, ``CheckpointPerceptionParams(checkpoint,
perception_params, default)`` (a parameters file picked for an expert checkpoint, see
``arvla.perception_params``) and local variables bound to those.
Anything else raises ``LaunchParseError`` naming the file and line, so a launch file that grows
beyond the subset fails the static test instead of being half-understood.
"""

from __future__ import annotations

import ast
import dataclasses
import pathlib
from typing import Any, Union


class LaunchParseError(ValueError):
    """A launch file uses something outside the understood subset (message names file:line)."""


@dataclasses.dataclass(frozen=True)
class Arg:
    """``LaunchConfiguration(name)``: the value of a launch argument."""

    name: str


@dataclasses.dataclass(frozen=True)
class PackageShare:
    """``FindPackageShare(package)`` joined with path parts."""

    package: str
    parts: tuple[str, ...] = ()

    def __str__(self) -> str:
        return "/".join((f"$(find-pkg-share {self.package})",) + self.parts)


Value = Union[str, int, float, bool, Arg, PackageShare]


@dataclasses.dataclass(frozen=True)
class CheckpointParams:
    """``CheckpointPerceptionParams(checkpoint, perception_params, default)``: the perception
    parameters file that goes with an expert checkpoint (``arvla.perception_params``)."""

    checkpoint: Value
    perception_params: Value
    default: Value


@dataclasses.dataclass(frozen=True)
class LaunchArgument:
    name: str
    default: Value | None  # None: required
    description: str


@dataclasses.dataclass(frozen=True)
class NodeSpec:
    package: str
    executable: str
    name: str
    namespace: Value | None
    condition: Arg | None                  # IfCondition(LaunchConfiguration(x))
    params_files: tuple[Value | CheckpointParams, ...]  # in order
    overrides: tuple[tuple[str, Value], ...]  # later wins, as in launch_ros


@dataclasses.dataclass(frozen=True)
class LaunchGraph:
    path: pathlib.Path
    arguments: tuple[LaunchArgument, ...]
    nodes: tuple[NodeSpec, ...]

    def argument(self, name: str) -> LaunchArgument:
        for a in self.arguments:
            if a.name == name:
                return a
        raise KeyError(f"{self.path.name} declares no launch argument '{name}'")


def _call_name(node: ast.AST) -> str:
    if isinstance(node, ast.Call):
        f = node.func
        return f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""
    return ""


class _Parser:
    def __init__(self, path: pathlib.Path) -> None:
        self.path = path
        self.env: dict[str, Any] = {}

    def fail(self, node: ast.AST, what: str) -> LaunchParseError:
        return LaunchParseError(f"{self.path}:{getattr(node, 'lineno', '?')}: {what}")

    def value(self, node: ast.AST) -> Any:
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Name) and node.id in self.env:
            return self.env[node.id]
        if isinstance(node, (ast.List, ast.Tuple)):
            return [self.value(e) for e in node.elts]
        if isinstance(node, ast.Dict):
            out = {}
            for k, v in zip(node.keys, node.values):
                key = self.value(k) if k is not None else None
                if not isinstance(key, str):
                    raise self.fail(node, "parameter names must be string literals")
                out[key] = self.value(v)
            return out
        name = _call_name(node)
        assert isinstance(node, ast.Call) or not name
        if name == "LaunchConfiguration":
            arg = self.value(node.args[0])
            if not isinstance(arg, str):
                raise self.fail(node, "LaunchConfiguration needs a literal name")
            return Arg(arg)
        if name == "FindPackageShare":
            return PackageShare(str(self.value(node.args[0])))
        if name == "PathJoinSubstitution":
            parts = self.value(node.args[0])
            if not parts or not isinstance(parts[0], PackageShare):
                raise self.fail(node, "PathJoinSubstitution must start with FindPackageShare(...)")
            base: PackageShare = parts[0]
            rest: list[str] = []
            for p in parts[1:]:
                if isinstance(p, PackageShare):
                    base, rest = p, list(p.parts)
                elif isinstance(p, str):
                    rest.append(p)
                else:
                    raise self.fail(node, f"unsupported path part {p!r}")
            return PackageShare(base.package, tuple(base.parts) + tuple(rest))
        if name == "CheckpointPerceptionParams":
            names = ("checkpoint", "perception_params", "default")
            given = dict(zip(names, (self.value(a) for a in node.args)))
            given.update({k.arg: self.value(k.value) for k in node.keywords})
            if set(given) != set(names):
                raise self.fail(node, f"CheckpointPerceptionParams needs {', '.join(names)}")
            return CheckpointParams(**given)
        if name == "IfCondition":
            cond = self.value(node.args[0])
            if not isinstance(cond, Arg):
                raise self.fail(node, "IfCondition must wrap LaunchConfiguration(...)")
            return ("if", cond)
        if name == "DeclareLaunchArgument":
            kw = {k.arg: self.value(k.value) for k in node.keywords}
            arg_name = self.value(node.args[0]) if node.args else kw.get("name")
            return LaunchArgument(str(arg_name), kw.get("default_value"), str(kw.get("description", "")))
        if name == "Node":
            kw = {k.arg: self.value(k.value) for k in node.keywords}
            for required in ("package", "executable", "name"):
                if not isinstance(kw.get(required), str):
                    raise self.fail(node, f"Node needs a literal {required}=")
            files, overrides = [], []
            for item in kw.get("parameters", []):
                if isinstance(item, dict):
                    overrides.extend(item.items())
                else:
                    files.append(item)
            cond = kw.get("condition")
            return NodeSpec(kw["package"], kw["executable"], kw["name"], kw.get("namespace"),
                            cond[1] if cond else None, tuple(files), tuple(overrides))
        if name == "LaunchDescription":
            return ("ld", self.value(node.args[0]))
        raise self.fail(node, f"unsupported expression {ast.dump(node)[:80]}")

    def parse(self) -> LaunchGraph:
        tree = ast.parse(self.path.read_text(encoding="utf-8"), filename=str(self.path))
        func = next((n for n in tree.body if isinstance(n, ast.FunctionDef)
                     and n.name == "generate_launch_description"), None)
        if func is None:
            raise LaunchParseError(f"{self.path}: no generate_launch_description()")
        for stmt in func.body:
            if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name):
                self.env[stmt.targets[0].id] = self.value(stmt.value)
            elif isinstance(stmt, ast.Return):
                ld = self.value(stmt.value)
                if not (isinstance(ld, tuple) and ld[0] == "ld"):
                    raise self.fail(stmt, "must return LaunchDescription([...])")
                args = tuple(e for e in ld[1] if isinstance(e, LaunchArgument))
                nodes = tuple(e for e in ld[1] if isinstance(e, NodeSpec))
                return LaunchGraph(self.path, args, nodes)
            elif isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant):
                continue  # docstring
            else:
                raise self.fail(stmt, "unsupported statement in generate_launch_description")
        raise LaunchParseError(f"{self.path}: generate_launch_description() returns nothing")


def parse_launch_file(path: str | pathlib.Path) -> LaunchGraph:
    return _Parser(pathlib.Path(path)).parse()


def resolve(value: Value | None, args: dict[str, str], share_dirs: dict[str, pathlib.Path]) -> Any:
    """Substitute launch argument values and package share paths (like launch would)."""
    if isinstance(value, Arg):
        if value.name not in args:
            raise LaunchParseError(f"launch argument '{value.name}' has no value")
        return args[value.name]
    if isinstance(value, PackageShare):
        if value.package not in share_dirs:
            raise LaunchParseError(f"no share directory known for package '{value.package}'")
        return str(share_dirs[value.package].joinpath(*value.parts))
    return value
