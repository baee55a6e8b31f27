"""``arvla demo --quick`` end to end in a temp dir (marked ``slow``: ``-m slow`` selects it,
``-m 'not slow'`` skips it)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from arvla.demo import CollectStage, DemoConfig, TrainStage, load_demo_config, main
from arvla_base.config import ConfigError

ROOT_CONFIG = "config/demo.yaml"


def test_config_loads_and_validates(repo_root):
    full = load_demo_config(repo_root / ROOT_CONFIG, quick=False)
    quick = load_demo_config(repo_root / ROOT_CONFIG, quick=True)
    assert full.tasks == ["pick_lift", "push", "cued_reach"]
    assert quick.tasks == ["pick_lift"] and quick.collect.episodes < full.collect.episodes
    assert quick.sim == full.sim     # quick changes sizes, not the robot
    large = load_demo_config(repo_root / ROOT_CONFIG, variant="large")
    assert large.tasks == full.tasks and large.collect.episodes > full.collect.episodes
    assert large.collect.mode == "inprocess" and large.sim == full.sim
    assert large.eval.seed0 == full.eval.seed0 and large.eval.mode == full.eval.mode
    assert large.eval.max_seconds["cued_reach"] == 9.0   # the task's own limit
    assert large.collect.motion_profile == "min_jerk" and full.collect.motion_profile == "trapezoid"
    assert large.train.history_drop == 0.5 and full.train.history_drop is None
    assert large.train.model == {"predict_steps": 16, "plan_anchor": "current"}
    assert large.expert["ensemble_steps"] == 16 and full.expert["ensemble_steps"] == 4
    assert full.train.model == {}
    with pytest.raises(ConfigError, match="history_drop"):
        TrainStage(history_drop=1.5)
    with pytest.raises(ConfigError, match="model.predict_step:"):
        TrainStage(model={"predict_step": 16})
    from arvla_action_expert.train import TrainConfig
    from arvla_base.config import load_config

    base = load_config(TrainConfig, repo_root / "config" / "expert_demo.yaml")
    tcfg = large.train.apply(base)
    assert (tcfg.model.predict_steps, tcfg.model.plan_anchor, tcfg.data.history_drop) == (
        16, "current", 0.5)
    assert tcfg.model.n_embd == base.model.n_embd and full.train.apply(base) == base
    with pytest.raises(ConfigError, match="train.model: .*plan_anchor"):
        TrainStage(model={"plan_anchor": "later"}).apply(base)
    with pytest.raises(ConfigError, match="variant 'huge'"):
        load_demo_config(repo_root / ROOT_CONFIG, variant="huge")
    with pytest.raises(ConfigError, match="tasks"):
        DemoConfig(tasks=["fly"])
    with pytest.raises(ConfigError, match="sim.real_time_factor"):
        DemoConfig(sim={"real_time_factor": 3.0})
    with pytest.raises(ConfigError, match="mode: must be one of"):
        CollectStage(mode="fast")
    with pytest.raises(ConfigError, match="prefixes: must be .offline. with mode .inprocess."):
        CollectStage(mode="inprocess", prefixes="live")
    with pytest.raises(ConfigError, match="motion_profile"):
        CollectStage(motion_profile="bang_bang")


@pytest.mark.slow
def test_demo_quick_end_to_end_and_cached(tmp_path, capsys, repo_root, monkeypatch):
    monkeypatch.chdir(repo_root)
    assert main(["--quick", "--out", str(tmp_path), "--no-progress"]) == 0
    out = capsys.readouterr().out
    for stage in ("collect pick_lift done", "train done", "evaluate done", "report done"):
        assert stage in out, out
    run = tmp_path / "quick"
    assert (run / "report" / "report.md").is_file()
    timings = json.loads((run / "timings.json").read_text())
    assert timings["total"] > 0
    # offline prefixes: every recorded camera frame (10 Hz = every 2nd step) became a prefix
    # of the demo's perception (block-10 features, 2x2 grid + instruction token)
    from arvla_action_expert.data import NpzEpisodeDir

    (episodes,) = list(run.glob("collect/pick_lift-*/episodes"))
    ep = NpzEpisodeDir(episodes)[0]
    assert ep.frame_tokens.shape[1:] == (5, 384) and ":L10:g2x2" in ep.model_id
    assert len(ep.frame_steps) >= ep.length // 2 - 2 and (np.diff(ep.frame_steps) <= 3).all()
    # second run: collection, training and evaluation come from the cache
    assert main(["--quick", "--out", str(tmp_path), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert out.count("cached") == 3, out


@pytest.mark.slow
def test_demo_large_path_collects_in_process_on_a_finer_grid(tmp_path, capsys, repo_root, monkeypatch):
    """`arvla demo --large` end to end at CI size: the config's `large` section replaced by the
    quick sizes plus the large recipe's collection mode and perception grid."""
    import yaml

    monkeypatch.chdir(repo_root)
    data = yaml.safe_load((repo_root / ROOT_CONFIG).read_text())
    large = data["large"]
    data["large"] = {**data["quick"], "perception": large["perception"],
                     "collect": {**data["quick"]["collect"], "mode": large["collect"]["mode"],
                                 "processes": 1},
                     "train": {**data["quick"]["train"], "history_drop": large["train"]["history_drop"],
                               "model": large["train"]["model"]},
                     "expert": large["expert"]}
    cfg = tmp_path / "demo.yaml"
    cfg.write_text(yaml.safe_dump(data))
    assert main(["--large", "--config", str(cfg), "--out", str(tmp_path), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "in process (1 workers)" in out and "prefix tokens per frame" in out, out
    for stage in ("collect pick_lift done", "train done", "evaluate done", "report done"):
        assert stage in out, out
    from arvla_action_expert.data import NpzEpisodeDir

    (episodes,) = list((tmp_path / "large").glob("collect/pick_lift-*/episodes"))
    ep = NpzEpisodeDir(episodes)[0]
    assert ep.frame_tokens.shape[1:] == (17, 384) and ":g4x4" in ep.model_id
    (ckpt,) = list((tmp_path / "large").glob("train/*/stage2/config.json"))
    train = json.loads(ckpt.read_text())["train"]   # the large recipe's
    assert train["data"]["history_drop"] == 0.5 and train["model"]["predict_steps"] == 16
    assert train["model"]["plan_anchor"] == "current"
