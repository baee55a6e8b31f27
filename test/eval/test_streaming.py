"""The ROS command path, emulated (arvla_eval.streaming): with trajectory_timing 'seamless' the
executed motion does not depend on when inside the tick the step finishes (issue #14)."""

from __future__ import annotations

import numpy as np

from arvla_eval.streaming import Latency, rollout
from arvla_sim.env import SimEnv


class SmoothPolicy:
    """A deterministic, smooth stand-in for the expert: joint targets on slow sinusoids around
    the start posture (the streaming path is under test, not the policy)."""

    control_rate_hz = 20.0

    def __init__(self) -> None:
        self.home: np.ndarray | None = None

    def reset(self) -> None:
        self.home = None

    def refresh_prefix(self, tokens: np.ndarray, capture_step: int) -> None:
        pass

    def step(self, state: np.ndarray, step_index: int, lookahead: int = 1) -> np.ndarray:
        if self.home is None:
            self.home = np.asarray(state, np.float64).copy()
        t = (step_index + 1 + np.arange(lookahead))[:, None] / self.control_rate_hz  # target times
        phase = np.linspace(0.0, 1.5, self.home.size)[None, :]
        amp = np.r_[np.full(7, 0.25), 0.0][None, :]
        return self.home[None, :] + amp * (np.sin(2.0 * t + phase) - np.sin(phase))


class ZeroBackbone:
    def encode(self, image: np.ndarray, instruction: str) -> np.ndarray:
        return np.zeros((1, 4), np.float32)



def _run(timing: str, latency: Latency | None) -> np.ndarray:
    from arvla_base.config import load_yaml
    from arvla_action_expert.node_config import ExpertNodeConfig
    import pathlib

    env = SimEnv(task="pick_lift", image_height=32, image_width=32, max_duration_s=1.5)
    params = load_yaml(pathlib.Path(__file__).resolve().parents[2] / "config" / "action_expert.yaml")
    p = params["arvla_action_expert"]["ros__parameters"]
    joints = list(env.joint_names)
    limits = ExpertNodeConfig(joints=joints, position_min=p["position_min"], position_max=p["position_max"],
                              max_velocity=p["max_velocity"]).joint_limits(joints)
    try:
        out = rollout(SmoothPolicy(), env, ZeroBackbone(), 100000, timing=timing, latency=latency,
                      limits=limits, lookahead=3, lag=0, frame_every=1000)
    finally:
        env.close()
    return out["positions"]


def test_seamless_motion_is_independent_of_the_step_latency():
    reference = _run("seamless", None)
    for seed in (1, 2):
        jittered = _run("seamless", Latency("uniform", 24.0, seed))  # < half a 50 ms period
        np.testing.assert_allclose(jittered, reference, atol=1e-6)


def test_arrival_timing_is_shaken_by_the_step_latency_and_tick_stamps_equal_it_without():
    arrival0 = _run("arrival", None)
    np.testing.assert_allclose(_run("tick", None), arrival0, atol=1e-9)
    shaken = _run("arrival", Latency("uniform", 24.0, 1))
    assert np.abs(shaken - arrival0).max() > 1e-4  # the plans' timelines moved with the latency
