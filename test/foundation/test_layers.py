"""The import contract: arvla's packages import one way, lowest layer first (STYLE.md "Layers").

    arvla_base                                   config, params, rosutil, fileio, episode, policy
    arvla_perception, arvla_sim                  the parts ...
    arvla_action_expert, arvla_data, arvla_baselines
    arvla_eval                                   evaluation: rollout, collect, evaluate, metrics, ...
    arvla                                        the command line, demo, doctor, bringup

Each package may import only the packages listed for it in ALLOWED (its own modules aside);
every import counts, at module level or inside a function. A new package must be added here.
"""

from __future__ import annotations

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]

_PARTS = ("arvla_perception", "arvla_sim", "arvla_action_expert", "arvla_data", "arvla_baselines")

ALLOWED: dict[str, set[str]] = {
    "arvla_base": set(),
    # the parts: each on the base, and on the parts it is built from
    "arvla_perception": {"arvla_base"},
    "arvla_sim": {"arvla_base"},
    "arvla_action_expert": {"arvla_base", "arvla_perception"},   # perception's token settings
    "arvla_data": {"arvla_base", "arvla_perception", "arvla_action_expert"},
    "arvla_baselines": {"arvla_base", "arvla_action_expert"},     # shared checkpoint + samples
    "arvla_eval": {"arvla_base", *_PARTS},
    "arvla": {"arvla_base", *_PARTS, "arvla_eval"},
}
OURS = set(ALLOWED) | {"arvla_msgs"}


def _packages() -> list[str]:
    return sorted(p.name for p in ROOT.iterdir()
                  if (p / "__init__.py").is_file() and p.name.startswith("arvla"))


def _imports(path: pathlib.Path) -> list[tuple[int, str]]:
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.append((node.lineno, node.module))
    return out


def test_every_package_has_a_contract():
    assert set(_packages()) - {"arvla_msgs"} == set(ALLOWED)


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_imports_only_lower_layers(package):
    allowed = ALLOWED[package] | {package, "arvla_msgs"}
    bad = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for line, module in _imports(path):
            top = module.split(".")[0]
            if top in OURS and top not in allowed:
                bad.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    assert not bad, f"{package} may import only {sorted(allowed)}:\n" + "\n".join(bad)


def _order() -> list[str]:
    """A topological order of ALLOWED (fails on a cycle)."""
    done: list[str] = []
    pending = dict(ALLOWED)
    while pending:
        ready = [p for p, deps in pending.items() if deps <= set(done)]
        assert ready, f"import cycle among {sorted(pending)}"
        for p in sorted(ready):
            done.append(p)
            del pending[p]
    return done


def test_layers_have_no_cycle():
    order = _order()
    assert order[0] == "arvla_base" and order[-1] == "arvla"


@pytest.mark.parametrize("package", sorted(set(ALLOWED) - {"arvla"}))
def test_library_packages_hold_no_argparse(package):
    """The command line is a layer of its own (``arvla.commands``): library modules parse no
    arguments (a node's ``main`` takes ROS arguments through rclpy, not argparse)."""
    bad = [f"{path.relative_to(ROOT)}:{line}" for path in sorted((ROOT / package).rglob("*.py"))
           for line, module in _imports(path) if module == "argparse"]
    assert not bad, f"argparse in library modules: {bad} (move the command to arvla/commands/)"
