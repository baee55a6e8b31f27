"""Streaming bench: the same policy and seeds in process vs through the trajectory path.

    python bench/streaming.py AR_CHECKPOINT [--chunk CHUNK_CHECKPOINT] [--task pick_lift ...]
        [--seeds 10 --seed0 100000] [--latency-ms 30] [--timings arrival tick seamless] [--ros]

Rows, side by side, on the same held-out seeds (deterministic: sim time, no wall clock):
- ``inprocess``: SimEnv's per-step hold (the policy's target held for one period), the reference;
- ``<timing>, <latency>``: the ROS path emulated without ROS -- each tick the node's own
  ``build_plan`` (and, for 'seamless', ``point_in_execution``) builds the trajectory, which
  reaches the sim's joint_trajectory_controller follower (``arvla_sim.jtc``, sampled at 100 Hz
  as in the sim node) after the step latency: 'measured' = the step's own wall time on this
  machine (what the node sees), 'U0-30' = drawn uniformly from 0..--latency-ms;
- with ``--ros``: the real ROS graph (sim + perception + expert nodes at real time) on the
  same seeds for each timing, through ``arvla_eval.rollout.run_episodes``.

Jerk: RMS jerk (rad/s^3) of the sim's exact joint positions at every control step for the
emulated rows; the ROS rows use the evaluation records' measure (/joint_states at their own
stamps resampled onto the same grid, ``records.measured_metrics``; equal on evenly timed data).
Prints a markdown table and the ratio of each row's jerk to its policy's in-process jerk.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time
from typing import Any, Callable

import numpy as np
import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from closed_loop_inprocess import MAX_SECONDS  # noqa: E402

from arvla_action_expert.joints import JointLimits  # noqa: E402
from arvla_action_expert.node_config import ExpertNodeConfig  # noqa: E402
from arvla_eval import metrics  # noqa: E402
from arvla_eval.streaming import Latency, rollout  # noqa: E402
from arvla_sim.env import SimEnv  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]


def panda_limits(joints: list[str]) -> JointLimits:
    """The embedded robot's limits exactly as the expert node reads them (config/action_expert.yaml)."""
    from arvla_base.config import load_yaml

    params = load_yaml(REPO / "config" / "action_expert.yaml")["arvla_action_expert"]["ros__parameters"]
    cfg = ExpertNodeConfig(joints=joints, position_min=params["position_min"], position_max=params["position_max"],
                           max_velocity=params["max_velocity"])
    return cfg.joint_limits(joints)


def wilson(k: int, n: int) -> str:
    s = metrics.success_rate([True] * k + [False] * (n - k))
    return f"{k}/{n} [{s.ci_low:.2f}, {s.ci_high:.2f}]"


def run_ros(policy: Any, name: str, task: str, seeds: list[int], timing: str, lookahead: int) -> dict[str, Any]:
    from arvla_eval.evaluate import node_params_for
    from arvla_eval.records import measured_metrics
    from arvla_eval.rollout import run_episodes

    demo = _demo_yaml()
    params = node_params_for(policy, {**demo["expert"], "trajectory_timing": timing, "lookahead_steps": lookahead})
    recs = run_episodes(policy, task=task, seeds=seeds, max_seconds=MAX_SECONDS[task],
                        sim_overrides=demo["sim"], perception_overrides=demo["perception"],
                        expert_overrides=params, policy_name=name, progress=False)

    found = [measured_metrics(r) for r in recs]
    jerks = [m.rms_jerk for m in found if m is not None]
    return {"success": sum(r.success for r in recs), "n": len(recs), "jerk": float(np.mean(jerks)),
            "step_ms": 1e3 * float(np.median(np.concatenate([r.step_latency_s for r in recs])))}


def _demo_yaml() -> dict[str, Any]:
    from arvla_base.config import load_yaml

    return load_yaml(REPO / "config" / "demo.yaml")["demo"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoint", help="AR expert checkpoint")
    ap.add_argument("--chunk", help="chunked baseline checkpoint (optional second policy)")
    ap.add_argument("--task", action="append")
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--seed0", type=int, default=100000)
    ap.add_argument("--latency-ms", type=float, default=30.0, help="upper end of the injected uniform latency")
    ap.add_argument("--timings", nargs="+", default=["arrival", "tick", "seamless"])
    ap.add_argument("--lookahead", type=int, default=3)
    ap.add_argument("--ensemble-steps", type=int, default=4)
    ap.add_argument("--ros", action="store_true", help="also the real ROS graph on the same seeds (slow)")
    args = ap.parse_args()
    torch.set_num_threads(1)

    from arvla_action_expert.policy import ExpertPolicy
    from arvla_perception.backbone import load_backbone
    from arvla_perception.config import PerceptionConfig

    demo = _demo_yaml()
    policies: dict[str, Any] = {"ar": ExpertPolicy.from_checkpoint(args.checkpoint)}
    policies["ar"].ensemble_steps = min(args.ensemble_steps, policies["ar"].config.predict_steps)
    if args.chunk:
        from arvla_baselines.chunk import ChunkPolicy

        policies["chunk"] = ChunkPolicy.from_checkpoint(args.chunk)
    pcfg = demo["perception"]
    backbone = load_backbone(PerceptionConfig(image_size=128, hidden_layer=pcfg["hidden_layer"],
                                              token_grid=list(pcfg["token_grid"])))
    seeds = list(range(args.seed0, args.seed0 + args.seeds))
    rows: list[tuple[str, str, str, dict[str, Any]]] = []
    t_start = time.monotonic()
    for task in args.task or ["pick_lift", "push", "cued_reach"]:
        env = SimEnv(task=task, image_height=128, image_width=128, max_duration_s=MAX_SECONDS[task])
        limits = panda_limits(list(env.joint_names))
        for name, policy in policies.items():
            cases: list[tuple[str, str | None, Callable[[int], Latency | None]]] = [
                ("in process", None, lambda s: None)]
            for timing in args.timings:
                cases.append((f"{timing}, step latency", timing, lambda s: Latency("measured", 0, s)))
                cases.append((f"{timing}, U(0,{args.latency_ms:g}) ms", timing,
                              lambda s: Latency("uniform", args.latency_ms, s)))
            for label, timing, lat in cases:
                res = [rollout(policy, env, backbone, s, timing=timing, latency=lat(s), limits=limits,
                               lookahead=args.lookahead) for s in seeds]
                out = {"success": sum(r["success"] for r in res), "n": len(res),
                       "jerk": float(np.mean([r["jerk"] for r in res])),
                       "step_ms": float(np.nanmedian([r["step_ms"] for r in res]))}
                rows.append((task, name, label, out))
                print(f"[{time.monotonic() - t_start:6.0f} s] {task:10s} {name:6s} {label:28s} success "
                      f"{wilson(out['success'], out['n'])}  jerk {out['jerk']:7.1f}", flush=True)
        env.close()
        if args.ros:
            for name, policy in policies.items():
                for timing in args.timings:
                    out = run_ros(policy, name, task, seeds, timing, args.lookahead)
                    rows.append((task, name, f"ROS graph, {timing}", out))
                    print(f"[{time.monotonic() - t_start:6.0f} s] {task:10s} {name:6s} ROS {timing:24s} success "
                          f"{wilson(out['success'], out['n'])}  jerk {out['jerk']:7.1f}", flush=True)

    print(f"\n{len(seeds)} seeds per row ({seeds[0]}..{seeds[-1]}), deterministic sim time for the "
          "emulated rows, real time for the ROS rows; jerk = RMS jerk of the joint positions at each "
          "control step (rad/s^3)\n")
    print("| task | policy | path | success [95% CI] | RMS jerk | jerk / in process | step p50 (ms) |")
    print("|---|---|---|---|---|---|---|")
    base = {(t, n): o["jerk"] for t, n, lbl, o in rows if lbl == "in process"}
    for task, name, label, o in rows:
        ratio = o["jerk"] / base[(task, name)] if base.get((task, name)) else float("nan")
        print(f"| {task} | {name} | {label} | {wilson(o['success'], o['n'])} | {o['jerk']:.1f} | "
              f"{ratio:.2f} | {o['step_ms']:.2f} |")


if __name__ == "__main__":
    main()
