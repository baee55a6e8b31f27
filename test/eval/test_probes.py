"""arvla_eval.probes: the failure-mode probes, on synthetic trajectories and on the scripted
demonstrators (what a policy that imitates them perfectly would show)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from arvla_eval.probes import StepLog, grasp_offset, push_motion
from arvla_sim.env import SimEnv
from arvla_sim.experts import PushExpert, make_expert


def _bench():
    """bench/failure_modes.py as a module (bench/ is not a package)."""
    import importlib.util
    import pathlib
    import sys

    path = pathlib.Path(__file__).resolve().parents[2] / "bench" / "failure_modes.py"
    spec = importlib.util.spec_from_file_location("failure_modes_bench", path)
    fm = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = fm   # its dataclasses look their module up there
    spec.loader.exec_module(fm)
    return fm


def test_grasp_offset_at_the_first_closing_step():
    T = 30
    hand = np.zeros((T, 3))
    hand[:, 0] = np.linspace(0.40, 0.52, T)        # moving forward in x
    hand[:, 2] = 0.06
    obj = np.tile([0.5, 0.01, 0.02], (T, 1))
    opening = np.full(T, 0.04)
    opening[:5] = 0.03                              # opening first, the widest is 0.04 later
    opening[20:] = np.linspace(0.039, 0.02, T - 20)  # closing from step 20: < 0.035 at step 22
    g = grasp_offset(hand, obj, opening)
    assert g.step == 22
    assert g.dx == pytest.approx(hand[22, 0] - 0.5)
    assert g.dy == pytest.approx(-0.01) and g.dz == pytest.approx(0.04)
    assert g.dxy == pytest.approx(math.hypot(g.dx, g.dy))
    way = np.array([0.5, 0.01]) - hand[0, :2]     # from where the hand started to the cube
    assert g.approach_dist == pytest.approx(np.linalg.norm(way))
    assert g.approach == pytest.approx((hand[22, :2] - [0.5, 0.01]) @ way / np.linalg.norm(way))
    assert g.approach < 0                           # short of the cube
    assert (g.cube_x, g.cube_y) == (0.5, 0.01)      # where it was placed
    # while closing (steps 22..29, the episode's end) the hand moves on in x; the cube stays
    assert g.close_move == pytest.approx(hand[29, 0] - hand[22, 0])
    assert g.close_rise == 0.0 and g.cube_shift == 0.0
    assert g.opening_after == pytest.approx(opening[29]) and g.cube_lift == 0.0


def test_lateral_scatter_about_the_placement_trend():
    fm = _bench()
    rng = np.random.default_rng(0)
    cube_y = rng.uniform(-0.15, 0.15, 40)
    noise = rng.normal(0, 0.004, 40)
    rows = [dict(cube_y=float(y), dy=float(0.05 * y + n)) for y, n in zip(cube_y, noise)]
    assert fm._residual_sd(rows) == pytest.approx(np.std(noise), rel=0.1)   # the trend removed
    assert np.std([r["dy"] for r in rows]) > 1.2 * fm._residual_sd(rows)
    assert math.isnan(fm._residual_sd([dict(dy=0.01)] * 5))   # records without the placement


def test_descent_timing_mean_spread_and_slope_over_the_approach():
    """The push table's descent column: when the hand comes down, its spread, and how much
    later it comes down per 10 cm of approach (a policy that waits until it is there follows
    the distance; one that moves for a set time does not)."""
    fm = _bench()
    dist = np.array([0.05, 0.10, 0.15, 0.20, 0.25])
    rows = [dict(descent_step=int(40 + 60 * d), approach_dist=float(d)) for d in dist]  # 6 / 10 cm
    rows.append(dict(descent_step=-1, approach_dist=0.1))         # never came down: left out
    steps = 40 + 60 * dist
    assert fm._descent(rows) == f"{steps.mean():.1f} ± {steps.std():.1f}, +6.0"
    assert fm._descent(rows[:2] + rows[-1:]) == "-"               # too few to fit a slope


def test_grasp_offset_when_the_fingers_never_close():
    T = 10
    g = grasp_offset(np.zeros((T, 3)), np.zeros((T, 3)), np.full(T, 0.04))
    assert g.step == -1 and math.isnan(g.dxy)


def test_push_motion_descent_point_height_and_progress():
    T = 40
    obj = np.tile([0.50, 0.0, 0.025], (T, 1))
    goal = np.tile([0.65, 0.0, 0.0], (T, 1))       # pushing along +x
    hand = np.zeros((T, 3))
    # the demonstrator's descent point: 0.025 + 0.03 behind the block's centre = x 0.445
    hand[:, 0], hand[:, 1], hand[:, 2] = 0.455, -0.004, np.linspace(0.30, 0.065, T)
    obj[30:, 0] = 0.50 + 0.002 * np.arange(1, T - 29)   # the block moves from step 30 on
    hand[29:, 2] = 0.07
    m = push_motion(hand, obj, goal, half=0.025, approach_gap=0.03)
    i = int(np.flatnonzero(hand[:, 2] < 0.12)[0])
    assert m.descent_step == i
    assert m.along == pytest.approx(0.01)          # 1 cm onto the block
    assert m.lateral == pytest.approx(0.004)
    assert m.push_height == pytest.approx(0.07)
    assert m.progress == pytest.approx(0.002 * (T - 30))
    assert m.remaining == pytest.approx(0.15 - 0.002 * (T - 30))
    # the hand came straight down where it started: short of the descent point by all the way
    assert m.approach_dist == pytest.approx(math.hypot(0.01, 0.004))
    assert m.approach == pytest.approx(-m.approach_dist)


def test_push_motion_when_nothing_happens():
    T = 10
    m = push_motion(np.full((T, 3), 0.3), np.tile([0.5, 0, 0.025], (T, 1)),
                    np.tile([0.6, 0, 0], (T, 1)), half=0.025, approach_gap=0.03)
    assert m.descent_step == -1 and math.isnan(m.along) and math.isnan(m.push_height)
    assert m.progress == 0.0


def test_step_log_refuses_a_task_without_a_probe():
    with pytest.raises(ValueError, match="cued_reach"):
        StepLog("cued_reach")


def _demonstrate(task: str, seed: int) -> tuple[dict[str, np.ndarray], SimEnv]:
    env = SimEnv(task=task, image_height=32, image_width=32)
    expert = make_expert(env, "min_jerk")
    log = StepLog(task)
    obs = env.reset(seed)
    while not env.done():
        log(None, env, None)
        obs = env.step(expert.act(obs))
    assert env.success(), f"{task} seed {seed}: the scripted demonstrator failed"
    return log.arrays(), env


def test_the_pick_demonstrator_grasps_on_the_cube():
    a, env = _demonstrate("pick_lift", 1)
    g = grasp_offset(a["hand"], a["obj"], a["opening"])
    env.close()
    assert g.step > 0
    assert g.dxy < 0.006 and abs(g.approach) < 0.006, g   # policies that fail: 1-2 cm off


def test_the_push_demonstrator_comes_down_behind_the_block_and_pushes_low():
    a, env = _demonstrate("push", 2)
    m = push_motion(a["hand"], a["obj"], a["goal"], half=float(env.task.half),
                    approach_gap=PushExpert.approach_gap)
    env.close()
    assert abs(m.along) < 0.01 and m.lateral < 0.01 and abs(m.approach) < 0.01, m
    assert abs(m.push_height - PushExpert.push_height) < 0.008, m
    assert m.remaining < 0.045 and m.progress > 0.08, m   # logged before the last step


def test_failure_modes_bench_probes_a_policy_end_to_end(tmp_path):
    """bench/failure_modes.py's probe runs a policy through the in-process evaluation with the
    step log, and its table reads the per-episode results."""
    pytest.importorskip("torch")
    from arvla_action_expert.model import ExpertConfig
    from arvla_action_expert.policy import ExpertPolicy
    from arvla_sim.robot import JOINT_NAMES

    fm = _bench()
    cfg = ExpertConfig(state_dim=8, action_dim=8, prefix_dim=1280, max_prefix_tokens=8,
                       n_embd=16, n_layer=1, n_head=2, ffn=32, window=8, head="regression")
    policy = ExpertPolicy.build_untrained(cfg, joint_names=JOINT_NAMES)
    layout = {"sim": {"image_height": 64, "image_width": 64, "camera_rate_hz": 10.0},
              "perception": {}, "max_seconds": {"pick_lift": 1.0, "push": 1.0}}
    res = fm.probe("untrained", policy, {"ensemble_steps": 1}, layout,
                   ["pick_lift", "push"], [5, 6])
    assert [r["seed"] for r in res["pick_lift"]] == [5, 6]
    # an untrained expert barely moves: no grasp, the hand never comes down to push
    assert all(r["step"] == -1 and not r["success"] for r in res["pick_lift"])
    assert all(r["descent_step"] == -1 and r["progress"] == pytest.approx(0.0, abs=1e-3)
               for r in res["push"])
    text = fm.table({"untrained": res})
    assert "| untrained | 2 | 0 |" in text and "push: descent point" in text
