"""The on-disk layout of ``arvla demo``'s artefacts, in one place (ROS-free).

``arvla demo`` (arvla/demo.py) writes it; ``arvla eval --artefacts`` and the benchmarks read it:

    <out>/collect/<task>-<key>/{episodes/, bags/, records.npz, DONE.json}
    <out>/train/<key>/{stage1/, stage2/, DONE.json}
    <out>/eval/<key>/{records.npz, DONE.json}
    <out>/report/
    <out>/chunk/            (the baseline ``arvla eval --artefacts`` trains)
    <out>/eval_baselines/   (its output)

``<key>`` is a hash of every input that shapes the stage; a stage directory counts only once its
``DONE.json`` (written atomically, last) is there.
"""

from __future__ import annotations

import json
import pathlib
from typing import Any

from arvla_base.config import ConfigError, deep_merge, load_yaml
from arvla_base.fileio import atomic_write_text
from arvla_base.paths import config_file

__all__ = ["DONE", "collect_dir", "demo_layout", "eval_dir", "mark_done", "read_done",
           "train_dir"]

DONE = "DONE.json"


def collect_dir(out: pathlib.Path, task: str, key: str) -> pathlib.Path:
    return out / "collect" / f"{task}-{key}"


def train_dir(out: pathlib.Path, key: str) -> pathlib.Path:
    return out / "train" / key


def eval_dir(out: pathlib.Path, key: str) -> pathlib.Path:
    return out / "eval" / key


def read_done(stage_dir: pathlib.Path) -> dict[str, Any] | None:
    """The stage's DONE.json, or None while it is not finished (or the marker is unreadable)."""
    marker = stage_dir / DONE
    if not marker.is_file():
        return None
    try:
        return json.loads(marker.read_text())
    except json.JSONDecodeError:
        return None


def mark_done(stage_dir: pathlib.Path, info: dict[str, Any]) -> None:
    atomic_write_text(stage_dir / DONE, json.dumps(info, indent=1, default=str))


def _task_of(collect: pathlib.Path) -> str:
    return collect.name.rsplit("-", 1)[0]


def demo_layout(art: pathlib.Path) -> dict[str, Any] | None:
    """What ``arvla demo`` left in ``art`` (None if it is not the demo's layout): every finished
    collection's ``episodes``, their ``tasks``, the newest finished stage-2 ``expert``, and the
    demo's own settings from config/demo.yaml (``sim``, ``perception``, ``expert_node``,
    ``collect``, ``seed0``, ``seeds``, ``max_seconds``, ``real_time_factor``, ``mode``, ``lag_steps``)."""
    collect = sorted(p for p in (art / "collect").glob("*-*") if read_done(p) is not None
                     and (p / "episodes").is_dir()) if (art / "collect").is_dir() else []
    if not collect:
        return None
    trained = sorted((p for p in (art / "train").glob("*") if read_done(p) is not None
                      and (p / "stage2" / "config.json").is_file()),
                     key=lambda p: p.stat().st_mtime) if (art / "train").is_dir() else []
    tasks = list(dict.fromkeys(_task_of(p) for p in collect))
    out: dict[str, Any] = {"episodes": [p / "episodes" for p in collect], "tasks": tasks,
                           "expert": trained[-1] / "stage2" if trained else None}
    try:  # the demo's own node parameters, so every policy runs in the demo's setting
        data = load_yaml(config_file("demo.yaml"))
        demo = data["demo"]
        if art.name in ("quick", "large") and isinstance(data.get(art.name), dict):
            demo = deep_merge(demo, data[art.name])   # `arvla demo --quick / --large` artefacts
        out["sim"] = dict(demo.get("sim") or {})
        out["perception"] = dict(demo.get("perception") or {})
        out["expert_node"] = dict(demo.get("expert") or {})
        out["collect"] = dict(demo.get("collect") or {})   # the demonstrator's settings
        ev = demo.get("eval") or {}
        out["seed0"], out["seeds"] = ev.get("seed0"), ev.get("episodes")
        out["max_seconds"] = ev.get("max_seconds")
        out["real_time_factor"] = ev.get("real_time_factor")
        out["mode"], out["lag_steps"] = ev.get("mode"), ev.get("lag_steps")
    except (OSError, KeyError, ConfigError):
        pass
    return out
