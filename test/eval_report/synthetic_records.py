"""Synthetic ``EpisodeRecord``s shaped like closed-loop runs (for report tests and previews).

A smooth reaching motion for the "ar" policy and the same motion with a kink every ``chunk``
steps for the chunked ones, so jerk differs the way chunk boundaries make it differ.
"""

from __future__ import annotations

import numpy as np

from arvla_eval.records import EpisodeRecord

JOINTS = [f"panda_joint{i}" for i in range(1, 8)]


def make_record(policy: str, task: str, seed: int, *, steps: int = 80, rate: float = 20.0,
                chunk: int = 0, success: bool = True, frames: bool = False) -> EpisodeRecord:
    rng = np.random.default_rng(seed)
    t = np.arange(steps) / rate
    goal = rng.uniform(-1, 1, len(JOINTS))
    s = np.clip(t / t[-1] * 1.3, 0, 1)
    profile = 10 * s**3 - 15 * s**4 + 6 * s**5  # minimum-jerk reach
    pos = profile[:, None] * goal[None, :]
    if chunk:
        # re-plan at every chunk start: a small jump towards a slightly different target
        offsets = rng.normal(0, 0.02, (steps // chunk + 1, len(JOINTS)))
        pos = pos + offsets[np.arange(steps) // chunk]
    commands = np.vstack([pos[1:], pos[-1:]])
    stale = (np.arange(steps) % 5).astype(np.int64)
    stale[:3] = -1
    lat = rng.uniform(0.8e-3, 1.5e-3 if policy == "ar" else 3e-3, steps)
    imgs = None
    if frames:
        imgs = np.zeros((10, 32, 32, 3), np.uint8)
        for i in range(10):
            imgs[i, :, : 3 * i + 2] = (40 * i) % 255
    return EpisodeRecord(policy=policy, task=task, seed=seed, success=success,
                         time_to_success=float(t[-1] * 0.8) if success else None,
                         control_rate_hz=rate, joint_names=list(JOINTS), times=t, positions=pos,
                         commands=commands, staleness_steps=stale, step_latency_s=lat,
                         frames=imgs)


def make_records(seeds=range(4), tasks=("pick_lift", "cued_reach")) -> list[EpisodeRecord]:
    out = []
    for task in tasks:
        for seed in seeds:
            out.append(make_record("ar", task, seed, success=seed != 3, frames=seed == 0))
            out.append(make_record("chunk", task, seed, chunk=10, success=seed % 2 == 0))
            out.append(make_record("chunk_te", task, seed, chunk=5, success=seed < 3))
    return out
