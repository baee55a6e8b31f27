"""DAgger (``arvla_eval.dagger``): the policy drives, the demonstrator labels, the robot executes
the policy's command within ``max_deviation`` of the label; episodes train like demonstrations."""

from __future__ import annotations

import numpy as np
import pytest

from arvla_base.config import ConfigError
from arvla_eval.collect_ros import CollectConfig

SIM = {"image_height": 64, "image_width": 64, "camera_rate_hz": 10.0}


def _collect(**kw):
    base = dict(task="pick_lift", seeds=[3, 4], prefixes="offline", max_seconds=1.5,
                only_success=False, sim=SIM)
    return CollectConfig(**{**base, **kw})


def _policy():
    pytest.importorskip("torch")
    from arvla_action_expert.model import ExpertConfig
    from arvla_action_expert.policy import ExpertPolicy
    from arvla_sim.robot import JOINT_NAMES

    cfg = ExpertConfig(state_dim=8, action_dim=8, prefix_dim=1280, max_prefix_tokens=8, n_embd=16,
                       n_layer=1, n_head=2, ffn=32, window=8, head="regression")
    # random weights, identity normalisation, delta targets: commands close to "stay where you
    # are" -- an arm that falls behind the demonstrator's plan from the first prefix on
    return ExpertPolicy.build_untrained(cfg, joint_names=JOINT_NAMES)


def test_bounded_deviation_executes_the_policy_near_the_labels(tmp_path):
    from arvla_action_expert.data import NpzEpisodeDir
    from arvla_base.episode import load_episode
    from arvla_eval.dagger import DaggerConfig, collect_dagger

    cfg = DaggerConfig(collect=_collect(), max_deviation=0.03, max_deviation_gripper=0.002)
    one = collect_dagger(_policy(), cfg, tmp_path / "w1", progress=False)
    two = collect_dagger(_policy(), cfg, tmp_path / "w2", progress=False, workers=2)
    assert [p.name for p in one.episodes] == ["pick_lift_000003.npz", "pick_lift_000004.npz"]
    for a, b in zip(one.episodes, two.episodes):   # the same episodes for any number of workers
        ea, eb = load_episode(a), load_episode(b)
        for key in ("states", "actions", "executed", "frame_tokens", "frame_steps"):
            assert np.array_equal(ea[key], eb[key]), key
    ep = load_episode(one.episodes[0])
    T = len(ep["states"])
    assert T == 30 and list(ep["frame_steps"]) == list(range(0, T, 2))
    off = ep["executed"] - ep["actions"].astype(np.float64)
    # before the first prefix (lag 2 steps) the label is executed, then the policy's command
    assert np.abs(off[:2]).max() < 1e-6
    assert np.abs(off[:, :7]).max() <= 0.03 + 1e-6 and np.abs(off[:, 7]).max() <= 0.002 + 1e-6
    assert np.isclose(np.abs(off[2:, :7]).max(), 0.03, atol=1e-6)   # the bound is reached
    run = one.runs[0]
    assert run.clipped > 0 and run.deviation > 0.03 and "clipped" in one.summary()
    assert len(list(NpzEpisodeDir(tmp_path / "w1" / "episodes"))) == 2   # the trainer reads them
    assert "dagger: pick_lift seed 3" in str(ep["source"])
    # resume: nothing run again
    assert collect_dagger(_policy(), cfg, tmp_path / "w1", progress=False, resume=True).runs == []


def test_zero_deviation_is_the_scripted_demonstration(tmp_path):
    from arvla_base.episode import load_episode
    from arvla_eval.collect_inprocess import collect_inprocess
    from arvla_eval.dagger import DaggerConfig, collect_dagger

    collect = _collect(seeds=[5])
    dag = collect_dagger(_policy(), DaggerConfig(collect=collect, max_deviation=0.0,
                                                 max_deviation_gripper=0.0),
                         tmp_path / "dagger", progress=False)
    demo = collect_inprocess(collect, tmp_path / "demo", progress=False)
    a, b = load_episode(dag.episodes[0]), load_episode(demo.episodes[0])
    assert np.array_equal(a["states"], b["states"]) and np.array_equal(a["actions"], b["actions"])
    assert np.array_equal(a["frame_steps"], b["frame_steps"])
    # the prefixes the policy saw (one frame at a time) are the batch-encoded demonstration's
    assert np.allclose(a["frame_tokens"], b["frame_tokens"], atol=1e-4)
    assert dag.runs[0].deviation > 0   # the policy did disagree: its commands were not executed


def test_unsolved_episodes_can_be_left_out(tmp_path):
    from arvla_eval.dagger import DaggerConfig, collect_dagger

    cfg = DaggerConfig(collect=_collect(seeds=[3]), keep_unsuccessful=False)
    res = collect_dagger(_policy(), cfg, tmp_path, progress=False)
    assert res.episodes == [] and not res.runs[0].success
    assert (tmp_path / "episodes" / ".pick_lift_000003.unsuccessful").is_file()


@pytest.mark.parametrize("kw, match", [({"max_deviation": -0.1}, "max_deviation"),
                                        ({"max_deviation_gripper": -1.0}, "max_deviation_gripper"),
                                        ({"lag_steps": -1}, "lag_steps"),
                                        ({"resync_m": -0.01}, "resync_m")])
def test_bad_settings_name_the_key(kw, match):
    from arvla_eval.dagger import DaggerConfig

    with pytest.raises(ConfigError, match=match):
        DaggerConfig(collect=_collect(), **kw)


def test_live_prefixes_are_refused():
    from arvla_eval.dagger import DaggerConfig

    with pytest.raises(ConfigError, match="offline"):
        DaggerConfig(collect=_collect(prefixes="live"))


def test_cli_writes_episodes_per_task_and_names_a_wrong_perception(tmp_path, capsys):
    from arvla.commands.dagger import cli_main
    from arvla_action_expert.checkpoint import CheckpointMeta, save_checkpoint
    from arvla_action_expert.data import NpzEpisodeDir
    from arvla_sim.robot import JOINT_NAMES

    pol = _policy()
    meta = CheckpointMeta(control_rate_hz=20.0, joint_names=list(JOINT_NAMES), stage=2)
    ck = save_checkpoint(tmp_path / "ck", pol.model, state_norm=pol.state_norm,
                         target_norm=pol.target_norm, meta=meta)
    argv = ["--expert", str(ck), "--out", str(tmp_path / "out"), "--task", "push", "--task",
            "cued_reach", "--seeds", "7:9", "--max-deviation", "0.02", "--resync-m", "0.02",
            "--no-progress"]
    assert cli_main(argv) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "/2 solved under the policy, 2 episodes kept" in out and "100 % of steps clipped" in out
    assert "re-plans from the measured hand" in out
    for task in ("push", "cued_reach"):
        assert len(list(NpzEpisodeDir(tmp_path / "out" / task / "episodes"))) == 2
    assert cli_main(argv) == 0 and "no episode run" in capsys.readouterr().out   # resumed: done
    # a checkpoint trained on other prefixes: a clear error naming both model ids, exit 2
    meta.model_id = "some-other-backbone"
    ck2 = save_checkpoint(tmp_path / "ck2", pol.model, state_norm=pol.state_norm,
                          target_norm=pol.target_norm, meta=meta)
    assert cli_main([*argv[:1], str(ck2), *argv[2:]]) == 2
    assert "some-other-backbone" in capsys.readouterr().err


def test_resync_labels_go_on_from_the_arm_not_from_the_plan():
    """A demonstrator whose arm is held back: its plan runs away (labels 20+ cm from the hand);
    re-planning from the measured hand (``resync_m``) keeps them within the tracking lead."""
    from arvla_sim.collect import ThroughController, collect_episode
    from arvla_sim.env import SimEnv
    from arvla_sim.experts import make_expert

    env = SimEnv(task="pick_lift", control_rate_hz=20.0, image_height=32, image_width=32)
    try:
        ctl = ThroughController(env)
        gaps = {}
        for tol in (0.0, 0.02):
            ex = make_expert(env, "min_jerk")
            ex.resync_m = tol
            obs = env.reset(2)
            ctl.reset()
            hold, gap = obs["state"].copy(), []
            for _ in range(15):
                label = ex.act(obs)
                hand, _ = ex.ik.fk(np.asarray(obs["state"][:7], np.float64))
                gap.append(float(np.linalg.norm(ex.ik.fk(label[:7].astype(np.float64))[0] - hand)))
                obs = ctl(hold)
            gaps[tol] = (max(gap), ex.resyncs)
        assert gaps[0.0][1] == 0 and gaps[0.0][0] > 0.15
        assert gaps[0.02][0] < 0.1 and gaps[0.02][1] > 0
        # following its own plan, the demonstrator is not disturbed (the lead is modelled)
        clean = [collect_episode(env, 1, render=False, execute=ctl, expert=make_expert(env, "min_jerk"))]
        ex = make_expert(env, "min_jerk")
        ex.resync_m = 0.02
        clean.append(collect_episode(env, 1, render=False, execute=ctl, expert=ex))
        assert ex.resyncs == 0 and np.array_equal(clean[0]["actions"], clean[1]["actions"])
    finally:
        env.close()
