"""`arvla eval --artefacts` understands what `arvla demo` leaves behind (the README table command)."""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import time

from arvla.commands.eval import _setup_from_args
from arvla_eval.evaluate import demo_layout, episode_source


def _finished(d: pathlib.Path) -> pathlib.Path:
    d.mkdir(parents=True, exist_ok=True)
    (d / "DONE.json").write_text(json.dumps({"done": True}))
    return d


def _demo_tree(root: pathlib.Path) -> pathlib.Path:
    from arvla_action_expert.data import save_episode_npz, synthetic_episodes

    eps = synthetic_episodes(4, steps=12, state_dim=2, prefix_dim=4, n_tokens=2, frame_every=4, seed=0)
    for task, chunk in (("pick_lift", eps[:2]), ("cued_reach", eps[2:])):
        d = _finished(root / "collect" / f"{task}-abc123") / "episodes"
        d.mkdir()
        for i, ep in enumerate(chunk):
            save_episode_npz(d / f"ep{i:03d}.npz", ep)
    (root / "collect" / "push-unfinished" / "episodes").mkdir(parents=True)  # no DONE.json: skipped
    old = _finished(root / "train" / "old")
    (old / "stage2").mkdir()
    (old / "stage2" / "config.json").write_text("{}")
    os.utime(old, (time.time() - 100, time.time() - 100))
    new = _finished(root / "train" / "new")
    (new / "stage2").mkdir()
    (new / "stage2" / "config.json").write_text("{}")
    return root


def _args(**kw) -> argparse.Namespace:
    base = dict(artefacts=None, episodes=None, expert=None, chunk=None, chunk_config="config/chunk_tiny.yaml",
                baseline_steps=None, out=None, task=None, seeds=None, seed0=None, max_seconds=None,
                policies="ar,chunk,chunk_te", sim_params=None, perception_params=None, expert_params=None,
                frames=False, quick=False, no_progress=True, mode=None, lag_steps=None, workers=1)
    base.update(kw)
    return argparse.Namespace(**base)


def test_demo_layout_is_found_and_combined(tmp_path):
    root = _demo_tree(tmp_path / "demo")
    found = demo_layout(root)
    assert found is not None
    assert found["tasks"] == ["cued_reach", "pick_lift"]
    assert found["expert"] == root / "train" / "new" / "stage2"
    assert len(episode_source(found["episodes"])) == 4
    setup = _setup_from_args(_args(artefacts=str(root)))
    assert setup.tasks == ["cued_reach", "pick_lift"]
    assert setup.expert == root / "train" / "new" / "stage2"
    assert setup.chunk == root / "chunk" and setup.out == root / "eval_baselines"
    # the demo's evaluation setting (config/demo.yaml) applies to every policy
    assert setup.seeds[0] == 100000 and len(setup.seeds) == 10
    assert setup.max_seconds_per_task["cued_reach"] == 7.0
    assert setup.expert_params.get("max_staleness") == 15
    assert setup.sim_params.get("image_height") == 128
    assert setup.mode == "lockstep" and setup.lag_steps == 2   # the demo's eval.mode


def test_large_demo_layout_takes_its_own_perception(tmp_path):
    """`arvla demo --large` artefacts (artifacts/demo/large) are evaluated with the large
    section's settings (its 4x4 perception grid), not the default demo's."""
    full = demo_layout(_demo_tree(tmp_path / "full"))
    large = demo_layout(_demo_tree(tmp_path / "large"))
    assert full["perception"]["token_grid"] == [2, 2]
    assert large["perception"]["token_grid"] == [4, 4]
    assert large["perception"]["hidden_layer"] == full["perception"]["hidden_layer"]
    setup = _setup_from_args(_args(artefacts=str(tmp_path / "large")))
    assert setup.perception_params["token_grid"] == [4, 4]


def test_flat_layout_still_works(tmp_path):
    setup = _setup_from_args(_args(artefacts=str(tmp_path), quick=True))
    assert setup.episodes == [tmp_path / "episodes"] and setup.expert == tmp_path / "expert"
    assert setup.out == tmp_path / "eval" and setup.seeds == [1000, 1001]
    assert demo_layout(tmp_path) is None
