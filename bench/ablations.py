"""Ablations of the AR expert's recipe against the chunked baselines, in process, on held-out seeds.

    python bench/ablations.py --artefacts artifacts/demo/full [--rows demo,window4,...]
        [--seeds 100000:100050] [--tasks pick_lift push cued_reach] [--out runs/ablations]
        [--threads 1] [--list]

Each row is the demo's expert recipe (config/expert_demo.yaml, the demo's stage-1/stage-2 steps)
with a few settings changed, trained on the demo's episodes (the same for every row), then run
with ``arvla_eval.inprocess`` (deterministic: the same seeds, the node's seamless command path,
perception lag 2 steps) beside the chunked baseline that ``arvla eval --artefacts`` trained on
those episodes (``chunk``, ``chunk_te``). Checkpoints and records are cached under ``--out`` by
a hash of the row's settings, so rows can be run in several processes (one per core, e.g.
``--rows a,b`` and ``--rows c,d``) and the table printed from the cache afterwards
(``--table``). Prints success with 95 % Wilson intervals and RMS jerk with 95 % intervals.

Demonstrations as a row: ``ROW@DATA`` trains row ROW (or the baselines ``chunk`` / ``chunk_te``,
retrained with config/chunk_demo.yaml) on other demonstrations than the demo's ROS-collected
ones: ``inprocN`` = N scripted demonstrations per task collected in process
(``arvla_eval.collect_inprocess``: the same demonstrator, DART noise and settle as the demo,
seeds 0..N-1, exact timing), cached under ``--out``/demos. ``demo@inproc50`` against ``demo``
isolates the collection's timing noise; ``demo@inproc150`` against ``chunk@inproc150`` asks
whether more data closes a gap; ``inprocNgK`` encodes the frames on a K x K token grid (the
demo: 2 x 2), for training and evaluation alike.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import pathlib
import re
import sys
import time
from typing import Any

import torch

REPO = pathlib.Path(__file__).resolve().parents[1]

# the `--large` recipe since session 15 (config/demo.yaml `large`) as a row's overrides: 16-step
# plans re-anchored at the token's state, history_drop 0.5, stage 1 doubled
ANCHOR16H16_ST1: dict[str, Any] = {"model.predict_steps": 16, "model.plan_anchor": "current",
                                   "data.history_drop": 0.5, "steps": [1200, 1400]}

# row name -> (what it tests, training overrides {"model.x": v, "data.y": v}, expert node params)
ROWS: dict[str, tuple[str, dict[str, Any], dict[str, Any]]] = {
    "demo": ("the demo's expert (ensemble_steps 4)", {}, {}),
    "ens1": ("each token's own prediction (ensemble_steps 1)", {}, {"ensemble_steps": 1}),
    "ens8": ("mean over the last 8 tokens (ensemble_steps 8)", {}, {"ensemble_steps": 8}),
    "window4": ("window 4: 3 steps of history per layer", {"model.window": 4}, {}),
    "hist8": ("8 history steps in training sequences", {"data.history": 8}, {}),
    "hdrop05": ("history_drop 0.5 (proprio/action history tokens dropped)", {"data.history_drop": 0.5}, {}),
    "hdrop08": ("history_drop 0.8", {"data.history_drop": 0.8}, {}),
    "fdrop0": ("every camera frame arrives in training (frame_drop 0; the demo drops half, "
               "so it trains on staler prefixes than the graph delivers)", {"data.frame_drop": 0.0}, {}),
    "prev_action": ("conditioned on the previous commanded action", {"model.use_prev_action": True}, {}),
    "absolute": ("absolute targets (not deltas to the measured state)", {"model.delta_actions": False}, {}),
    "binned": ("binned head (64 bins) instead of regression", {"model.head": "binned"}, {}),
    "predict16": ("multi-token prediction over 16 steps", {"model.predict_steps": 16}, {}),
    "p16e16": ("predictions over 16 steps, the mean of the last 16 executed (like chunk_te's "
               "16 overlapping chunks)", {"model.predict_steps": 16}, {"ensemble_steps": 16}),
    "anchor16": ("predictions over 16 steps anchored at the current state (plan_anchor "
                 "'current': token t is trained on action[t+k] - state[t], where the arm is to be "
                 "in k steps, not on each step's own delta), executing each token's own step",
                 {"model.predict_steps": 16, "model.plan_anchor": "current"}, {"ensemble_steps": 1}),
    "anchor16e4": ("anchor16, executing the mean of the last 4 tokens' predictions (each moved "
                   "onto the state now)", {"model.predict_steps": 16, "model.plan_anchor": "current"},
                   {"ensemble_steps": 4}),
    "anchor16h": ("anchor16e4 with history_drop 0.5 (hdrop05)",
                  {"model.predict_steps": 16, "model.plan_anchor": "current",
                   "data.history_drop": 0.5}, {"ensemble_steps": 4}),
    "anchor8": ("as anchor16 over the recipe's 8 steps",
                {"model.plan_anchor": "current"}, {"ensemble_steps": 1}),
    "aux16": ("auxiliary chunk head (16 steps)", {"model.aux_chunk": 16}, {}),
    "wide": ("hdrop05, 1.5x as wide (n_embd 192, 6 heads, FFN 576): 2.2x the parameters",
             {"model.n_embd": 192, "model.n_head": 6, "model.ffn": 576, "data.history_drop": 0.5}, {}),
    "long": ("2x the training steps", {"steps_x": 2}, {}),
    "longh": ("hdrop05 trained 2x the steps (stage 1 1200 + stage 2 2800)",
              {"data.history_drop": 0.5, "steps_x": 2}, {}),
    "wd01": ("hdrop05 with weight decay 0.1 instead of 0.01 (regularised against over-fitting "
             "the demonstrations)", {"data.history_drop": 0.5, "optim.weight_decay": 0.1}, {}),
    "wd01long": ("wd01 trained 2x the steps", {"data.history_drop": 0.5,
                                               "optim.weight_decay": 0.1, "steps_x": 2}, {}),
    "drop01": ("hdrop05 with residual dropout 0.1 in every block (model.dropout)",
               {"data.history_drop": 0.5, "model.dropout": 0.1}, {}),
    "drop01long": ("drop01 trained 2x the steps",
                   {"data.history_drop": 0.5, "model.dropout": 0.1, "steps_x": 2}, {}),
    "seed1": ("the same recipe, training seed 1 (how far one training run moves the result)",
              {"seed": 1}, {}),
    "hdrop05s1": ("hdrop05 with training seed 1", {"data.history_drop": 0.5, "seed": 1}, {}),
    "hdrop05s2": ("hdrop05 with training seed 2", {"data.history_drop": 0.5, "seed": 2}, {}),
    "hdrop05s1st1": ("hdrop05s1 with twice the action-only stage 1 (1200 + 1400 steps): is the "
                     "memory task's seed dependence stage 1's?",
                     {"data.history_drop": 0.5, "seed": 1, "steps": [1200, 1400]}, {}),
    "hdrop05st1": ("hdrop05 (training seed 0) with stage 1 doubled (1200 + 1400 steps)",
                   {"data.history_drop": 0.5, "steps": [1200, 1400]}, {}),
    "hdrop05s2st1": ("hdrop05s2 (training seed 2) with stage 1 doubled (1200 + 1400 steps)",
                     {"data.history_drop": 0.5, "seed": 2, "steps": [1200, 1400]}, {}),
    "absh": ("hdrop05 with absolute targets (model.delta_actions false), as the baselines "
             "predict: a stop point that is a function of where the cube is, not of the "
             "difference between it and the arm", {"model.delta_actions": False,
                                                   "data.history_drop": 0.5}, {}),
    "window1": ("no memory at all (window 1: each step token sees itself and the prefix, like "
                "the baselines' single state): is the history what costs localisation?",
                {"model.window": 1}, {}),
    "chunklike": ("the baseline's objective in the AR expert's network and training: no memory "
                  "(window 1), 16 absolute targets per token, the mean of the last 16 tokens' "
                  "predictions executed (chunk_te's 16 overlapping chunks)",
                  {"model.window": 1, "model.delta_actions": False, "model.predict_steps": 16},
                  {"ensemble_steps": 16}),
    "chunkmem": ("chunklike with the memory kept (window 16, history_drop 0.5): 16 absolute "
                 "targets per token, the mean of the last 16 executed",
                 {"model.delta_actions": False, "model.predict_steps": 16,
                  "data.history_drop": 0.5}, {"ensemble_steps": 16}),
    "chunkmemst1": ("chunkmem (absolute targets, the memory, 16 plans averaged; pick_lift 38 "
                    "against anchor16h16's 27 at the same 600-step stage 1) with the --large "
                    "recipe's doubled stage 1 (1200 + 1400 steps)",
                    {"model.delta_actions": False, "model.predict_steps": 16,
                     "data.history_drop": 0.5, "steps": [1200, 1400]}, {"ensemble_steps": 16}),
    "anchor16h16": ("chunk-like execution with delta targets and the memory: 16 targets per "
                    "token anchored at its state (plan_anchor 'current': where the arm is to be, "
                    "seen from now), history_drop 0.5, the mean of the last 16 executed",
                    {"model.predict_steps": 16, "model.plan_anchor": "current",
                     "data.history_drop": 0.5}, {"ensemble_steps": 16}),
    "anchor16h16st1": ("anchor16h16 (training seed 0) with the --large recipe's doubled stage 1 "
                       "(1200 + 1400 steps)",
                       ANCHOR16H16_ST1, {"ensemble_steps": 16}),
    "anchor16h16s1st1": ("anchor16h16st1 with training seed 1",
                         {**ANCHOR16H16_ST1, "seed": 1}, {"ensemble_steps": 16}),
    "anchor16h16s2st1": ("anchor16h16st1 with training seed 2",
                         {**ANCHOR16H16_ST1, "seed": 2}, {"ensemble_steps": 16}),
    "anchor16h16rope8st1": ("anchor16h16st1 with RoPE on 8 of each head's 32 dims "
                            "(model.rope_dims; GPT-NeoX partial rotary): a prefix key is rotated "
                            "by its staleness, which varies (training 0-10 steps, evaluation "
                            "2-3), so fully rotated keys match the cube's features only up to "
                            "that angle; 24 dims left pure content",
                            {**ANCHOR16H16_ST1, "model.rope_dims": 8}, {"ensemble_steps": 16}),
    "anchor16h16b64st1": ("anchor16h16st1 with batches of 64 sequences (2x the episodes per "
                          "step): the baseline sees 4000 x 32 independent frames, the expert's "
                          "stage 2 1400 x 32 sequences of one episode each",
                          {**ANCHOR16H16_ST1, "optim.batch_size": 64}, {"ensemble_steps": 16}),
    "anchor16h16l2st1": ("anchor16h16st1 with stage 2 twice as long (1200 + 2800 steps: the "
                         "expert's vision-conditioned updates, 2800 x 32 sequences, nearer the "
                         "baseline's 4000 x 32 frames)",
                         {**ANCHOR16H16_ST1, "steps": [1200, 2800]}, {"ensemble_steps": 16}),
    "anchor16h16l2s1st1": ("anchor16h16l2st1 with training seed 1",
                           {**ANCHOR16H16_ST1, "steps": [1200, 2800], "seed": 1},
                           {"ensemble_steps": 16}),
    "anchor16h16st1e8": ("anchor16h16st1's checkpoint executing the mean of the last 8 plans "
                         "(ensemble_steps 8): less of the far, older predictions in each command",
                         ANCHOR16H16_ST1, {"ensemble_steps": 8}),
    "anchor16h16st1e4": ("anchor16h16st1's checkpoint, ensemble_steps 4",
                         ANCHOR16H16_ST1, {"ensemble_steps": 4}),
    "anchor32h32st1": ("anchor16h16st1 with 32-step plans, the mean of the last 32 executed "
                       "(model.predict_steps 32, ensemble_steps 32): averaging 8 or 4 plans "
                       "instead of 16 lost pick_lift (31, 26 against 34), so more of them",
                       {**ANCHOR16H16_ST1, "model.predict_steps": 32}, {"ensemble_steps": 32}),
    "anchor16h16h2st1": ("anchor16h16st1 with stage 2 half as long (1200 + 700 steps): stage 2 "
                         "at 2800 lost pick_lift on both seeds (31, 29), so fewer",
                         {**ANCHOR16H16_ST1, "steps": [1200, 700]}, {"ensemble_steps": 16}),
    "anchor16h16st1m01": ("anchor16h16st1's checkpoint, the 16 plans weighed as ACT does with "
                          "ensemble_m 0.1 (exp(-m i), i = 0 the oldest: the oldest plan 4.5x the "
                          "newest); fewer plans lost pick_lift, so lean on the older ones",
                          ANCHOR16H16_ST1, {"ensemble_steps": 16, "ensemble_m": 0.1}),
    "anchor16h16st1m-01": ("anchor16h16st1's checkpoint, ensemble_m -0.1 (the newest plan 4.5x "
                           "the oldest)", ANCHOR16H16_ST1, {"ensemble_steps": 16, "ensemble_m": -0.1}),
    "anchor16h16sn05st1": ("anchor16h16st1 with the input states read off by noise of 0.05 "
                           "(data.state_noise, normalised units) in training: a longer stage 2 "
                           "fits the demonstrations better and loses pick_lift in closed loop "
                           "(h2 40, st1 34, l2 31)",
                           {**ANCHOR16H16_ST1, "data.state_noise": 0.05}, {"ensemble_steps": 16}),
    "anchor16h16spst1": ("anchor16h16st1 with samples drawn in proportion to episode length "
                         "(data.sample_by 'step'): push's episodes are ~1.6x as long as "
                         "pick_lift's, so per step pick_lift trains ~1.9x as often; pick_lift "
                         "gains from a shorter stage 2 (h2 40) where push loses (7)",
                         {**ANCHOR16H16_ST1, "data.sample_by": "step"}, {"ensemble_steps": 16}),
    "anchor16h16sps1st1": ("anchor16h16spst1 with training seed 1",
                           {**ANCHOR16H16_ST1, "data.sample_by": "step", "seed": 1},
                           {"ensemble_steps": 16}),
    "anchor16h16sps2st1": ("anchor16h16spst1 with training seed 2",
                           {**ANCHOR16H16_ST1, "data.sample_by": "step", "seed": 2},
                           {"ensemble_steps": 16}),
    "anchor16h16spl2st1": ("anchor16h16spst1 with stage 2 twice as long (1200 + 2800): push "
                           "gained with stage-2 length on both seeds (700: 7, 2; 1400: 15, 13; "
                           "2800: 15, 18)",
                           {**ANCHOR16H16_ST1, "data.sample_by": "step", "steps": [1200, 2800]},
                           {"ensemble_steps": 16}),
    "anchor16h16spl2s1st1": ("anchor16h16spl2st1 with training seed 1",
                             {**ANCHOR16H16_ST1, "data.sample_by": "step", "steps": [1200, 2800],
                              "seed": 1}, {"ensemble_steps": 16}),
    "anchor16h16spl2s2st1": ("anchor16h16spl2st1 with training seed 2",
                             {**ANCHOR16H16_ST1, "data.sample_by": "step", "steps": [1200, 2800],
                              "seed": 2}, {"ensemble_steps": 16}),
    "anchor16h16l2lst1": ("anchor16h16st1 trained with the squared error (model.regression_loss "
                          "'l2'): L1 fits each target's conditional median, which is exactly 'no "
                          "motion' wherever the demonstrator was at rest in more than half the "
                          "states the expert cannot tell apart, so the approach may stop once the "
                          "expert is half sure it has arrived (push descends at step 59 +- 3 on "
                          "every seed, 0.6-1 cm short); the mean shrinks towards rest, never onto it",
                          {**ANCHOR16H16_ST1, "model.regression_loss": "l2"}, {"ensemble_steps": 16}),
    "anchor16h16hubst1": ("anchor16h16st1 with the Huber loss (model.regression_loss 'huber', "
                          "huber_delta 1.0): the mean near the target, the median for outliers",
                          {**ANCHOR16H16_ST1, "model.regression_loss": "huber"},
                          {"ensemble_steps": 16}),
    "anchor16h16nost1": ("anchor16h16st1 without the action-only stage 1: stage 2 for 2600 "
                         "steps from a new model (the same optimiser steps in all). Without vision "
                         "stage 1 can only learn the demonstrator's typical motion from a state; "
                         "on push the expert moves for the demonstrator's time at a smaller "
                         "amplitude (seed 100004: 10.9 cm of 18.8) and comes down where that "
                         "leaves it, as if that prior outweighed the prefix",
                         {**ANCHOR16H16_ST1, "steps": [0, 2600]}, {"ensemble_steps": 16}),
    "anchor16h16hd1st1": ("anchor16h16st1 with history_drop 1.0: every stage-2 sample's memory "
                          "cut to a random horizon of 1-48 steps per layer (at 0.5 only ~1 sample "
                          "in 6 is cut below the 16-step window). On push the expert moves for "
                          "the demonstrator's time whatever distance that covers and does not "
                          "correct after it (descent at step 59 +- 3); a memory that cannot see "
                          "the whole lateral move cannot time it",
                          {**ANCHOR16H16_ST1, "data.history_drop": 1.0}, {"ensemble_steps": 16}),
    "anchor16h16w8st1": ("anchor16h16st1 with an attention window of 8 (3 layers relay 21 steps "
                         "back instead of 45): shorter than push's lateral move (~25 steps)",
                         {**ANCHOR16H16_ST1, "model.window": 8}, {"ensemble_steps": 16}),
    "anchor16h16fd0st1": ("anchor16h16st1 with every camera frame arriving in training "
                          "(data.frame_drop 0): the prefix's age in training is then 0-5 steps, "
                          "as the baselines' (0-4) and near the evaluation's 2-3, instead of "
                          "0-12+ (mean ~4.5) with half the frames dropped: a learner that "
                          "compensates the arm's motion since capture for the training's mean age "
                          "would stop short at the evaluation's shorter one",
                          {**ANCHOR16H16_ST1, "data.frame_drop": 0.0}, {"ensemble_steps": 16}),
    "anchor16h16fd0s1st1": ("anchor16h16fd0st1 with training seed 1",
                            {**ANCHOR16H16_ST1, "data.frame_drop": 0.0, "seed": 1},
                            {"ensemble_steps": 16}),
    "anchor16h16fd0s2st1": ("anchor16h16fd0st1 with training seed 2",
                            {**ANCHOR16H16_ST1, "data.frame_drop": 0.0, "seed": 2},
                            {"ensemble_steps": 16}),
    "anchor16h16spfd0st1": ("anchor16h16fd0st1 with data.sample_by 'step'",
                            {**ANCHOR16H16_ST1, "data.frame_drop": 0.0, "data.sample_by": "step"},
                            {"ensemble_steps": 16}),
    "anchor16h16h2s1st1": ("anchor16h16h2st1 with training seed 1",
                           {**ANCHOR16H16_ST1, "steps": [1200, 700], "seed": 1},
                           {"ensemble_steps": 16}),
    "anchor16h16uwst1": ("anchor16h16st1 with every plan step weighed by its error in target "
                         "units (model.plan_weight 'uniform'), as the executed mean of 16 plans "
                         "weighs them; 'relative' divides step k by its mean |target|, so the "
                         "far steps, 15 of the 16 averaged, train ~1/k as hard",
                         {**ANCHOR16H16_ST1, "model.plan_weight": "uniform"}, {"ensemble_steps": 16}),
    "anchor16h16auxst1": ("anchor16h16st1 with ACT's chunk objective on the prefix as an auxiliary "
                          "loss (model.aux_chunk 16): the prefix encoder must place the arm's "
                          "next 16 targets from the frame alone, i.e. locate the cube",
                          {**ANCHOR16H16_ST1, "model.aux_chunk": 16}, {"ensemble_steps": 16}),
    "anchor16h16s1": ("anchor16h16 (stage 1 600 steps, whose push approach stopped short least) "
                      "with training seed 1",
                      {"model.predict_steps": 16, "model.plan_anchor": "current",
                       "data.history_drop": 0.5, "seed": 1}, {"ensemble_steps": 16}),
    "deep": ("hdrop05 with 5 layers instead of 3 (prefix encoder and decoder): the prefix "
             "reaches the last decoder layer through 4 blocks instead of 2",
             {"model.n_layer": 5, "data.history_drop": 0.5}, {}),
    "finalkv": ("hdrop05 with every decoder layer attending to the prefix encoder's output "
                "(model.prefix_kv 'final', encoder-decoder like the baseline) instead of prefix "
                "layer i's own K/V", {"model.prefix_kv": "final", "data.history_drop": 0.5}, {}),
    "vision2000": ("all 2000 steps with the prefix, like the baseline (stage 1: 1 step, stage 2: "
                   "2000)", {"steps": [1, 2000]}, {}),
    "vision2000h": ("vision2000 with history_drop 0.5 (hdrop05 without the action-only stage)",
                    {"steps": [1, 2000], "data.history_drop": 0.5}, {}),
    # DAgger rows (arvla_eval.dagger): {"dagger": (base row, episodes per task, max_deviation
    # rad, max_deviation_gripper m, first seed[, resync_m])}; stage 2 trained again from the
    # base's stage 1 on the demonstrations plus every round's policy-driven episodes, as many steps
    "dagger": ("hdrop05, then stage 2 again on its demonstrations + 100 of its own episodes per "
               "task (seeds 1000-1099), labelled by the demonstrator, executed within 0.05 rad / "
               "5 mm of the labels", {"data.history_drop": 0.5,
                                      "dagger": ("hdrop05", 100, 0.05, 0.005, 1000)}, {}),
    "daggerfree": ("as dagger, the policy's commands executed unbounded (pure DAgger)",
                   {"data.history_drop": 0.5, "dagger": ("hdrop05", 100, 1.0, 0.04, 1000)}, {}),
    "dagger2": ("a second DAgger round: dagger's policy drives 100 more episodes per task (seeds "
                "1100-1199), stage 2 again on the demonstrations + both rounds",
                {"data.history_drop": 0.5, "dagger": ("dagger", 100, 0.05, 0.005, 1100)}, {}),
    "daggerrs": ("as daggerfree (the policy's commands executed unbounded), the demonstrator "
                 "re-planning from the measured hand whenever it is > 2 cm off its plan (labels "
                 "that say how to go on from where the arm is, not where the plan is)",
                 {"data.history_drop": 0.5, "dagger": ("hdrop05", 100, 1.0, 0.04, 1000, 0.02)}, {}),
    "daggerrsb": ("daggerrs executed within 0.05 rad / 5 mm of the labels",
                  {"data.history_drop": 0.5, "dagger": ("hdrop05", 100, 0.05, 0.005, 1000, 0.02)}, {}),
    "daggers1": ("dagger from hdrop05s1, stage 2 with training seed 1 (how far one training run "
                 "moves it)", {"data.history_drop": 0.5, "seed": 1,
                               "dagger": ("hdrop05s1", 100, 0.05, 0.005, 1000)}, {}),
}


def data_episodes(data: str, demo: Any, layout: dict[str, Any], tasks: list[str],
                  out: pathlib.Path, workers: int) -> list[pathlib.Path]:
    """The episode directories of demonstration set ``data`` ('ros' = the demo's own)."""
    if data == "ros":
        return list(layout["episodes"])
    from arvla_eval.collect_inprocess import collect_inprocess
    from arvla_eval.collect_ros import CollectConfig

    spec = parse_data(data)
    n, offset = spec.n, spec.offset
    c, dirs = demo.collect, []
    for task in layout["tasks"]:
        seeds = list(range(c.seed0 + offset, c.seed0 + offset + n))
        ccfg = CollectConfig(task=task, seeds=seeds,
                             control_rate_hz=demo.control_rate_hz, settle_s=c.settle_s,
                             sim=layout["sim"], perception=data_perception(data, layout), prefixes="offline",
                             noise_std=c.noise_std if spec.noise is None else spec.noise,
                             noisy_fraction=c.noisy_fraction, motion_profile=spec.profile,
                             grasp_retries=spec.retries, speed_jitter=spec.jitter)
        # one cache per setting (not per count): inproc50 is the first 50 seeds of inproc150
        d = out / "demos" / f"{task}-{_key({**ccfg.cache_key_dict(), 'seeds': None})}"
        t0 = time.monotonic()
        res = collect_inprocess(ccfg, d, progress=True, workers=workers, resume=True)
        if res.records:
            print(f"[{data}] {task}: {len(res.records)} more seeds demonstrated, "
                  f"{time.monotonic() - t0:.0f} s", flush=True)
        # the episodes of seeds offset..offset+n-1, as links
        first = d / (f"first{n}" if not offset else f"seeds{offset}_{n}")
        if not first.is_dir():
            tmp = d / f".{first.name}.tmp"
            tmp.mkdir(exist_ok=True)
            for s_ in seeds:
                src = d / "episodes" / f"{task}_{s_:06d}.npz"
                if src.is_file() and not (tmp / src.name).exists():
                    (tmp / src.name).symlink_to(src.resolve())
            tmp.rename(first)
        print(f"[{data}] {task}: {len(list(first.glob('*.npz')))} successful demonstrations of "
              f"{n}", flush=True)
        dirs.append(first)
    return dirs


@dataclasses.dataclass(frozen=True)
class DataSpec:
    """A demonstration set named ``inprocN[gK][mj|mjr][nS][jJ][sO][retry]`` (see ``parse_data``)."""

    n: int                      # demonstrations per task
    grid: int | None = None     # K: perception tokens on a K x K grid (None: the demo's)
    profile: str = "trapezoid"  # the demonstrator's motion_profile
    noise: float | None = None  # DART noise, rad (None: the demo's)
    offset: int = 0             # the demonstration seeds start here
    retries: int = 0            # grasp_retries of the demonstrator
    jitter: float = 0.0         # speed_jitter of the demonstrator


def parse_data(data: str) -> DataSpec:
    """'inprocN' -> N per task; then 'gK' -> perception on a K x K token grid; then 'mj' -> the
    demonstrator moves along minimum-jerk profiles (``motion_profile: min_jerk``), 'mjr' ->
    along minimum-jerk profiles re-planned every step (``min_jerk_replan``); then 'nS' -> DART
    noise of S/100 rad (the demo's: 0.02); then 'jJ' -> every waypoint's speed scaled by a
    factor drawn in [1/(1+J/100), 1+J/100] (``speed_jitter``, 'mj' only); then 'sO' -> the
    demonstration seeds O..O+N-1 instead of 0..N-1 (the same demonstrator, other samples:
    ``inproc150g4mjs150`` against ``inproc150g4mj`` measures how far resampling alone moves a
    result; both are cut from ``inproc300g4mj``'s cache); then 'retry' -> pick_lift's
    demonstrator tries a missed grasp again, twice at most (``grasp_retries: 2``)."""
    m = re.fullmatch(r"inproc(\d+)(?:g(\d+))?(mjr|mj)?(?:n(\d+))?(?:j(\d+))?(?:s(\d+))?(retry)?", data)
    if m is None:
        raise SystemExit(f"unknown demonstrations {data!r}: 'ros', 'inprocN' (N per task), "
                         "'inprocNgK' (perception tokens on a K x K grid), either + 'mj' "
                         "(minimum-jerk demonstrator) or 'mjr' (the same, re-planned every step), "
                         "+ 'nS' (DART noise S/100 rad), + 'jJ' (speeds jittered by J/100), "
                         "+ 'sO' (seeds from O), + 'retry' "
                         "(missed grasps tried again)")
    return DataSpec(n=int(m.group(1)), grid=int(m.group(2)) if m.group(2) else None,
                    profile={"mj": "min_jerk", "mjr": "min_jerk_replan", None: "trapezoid"}[m.group(3)],
                    noise=int(m.group(4)) / 100.0 if m.group(4) else None,
                    jitter=int(m.group(5) or 0) / 100.0,
                    offset=int(m.group(6) or 0), retries=2 if m.group(7) else 0)


def data_perception(data: str, layout: dict[str, Any]) -> dict[str, Any]:
    """The perception node parameters of demonstration set ``data`` (the demo's, or its grid)."""
    k = None if data == "ros" else parse_data(data).grid
    if k is None:
        return dict(layout["perception"])
    return {**layout["perception"], "token_grid": [k, k]}


# baseline rows: execution mode, training steps x the recipe's (config/chunk_demo.yaml: 2000
# steps until 2026-12-07, 4000 since: the half rows are the older recipe, and the 2x / 4x rows
# of the README's tables of 2000 steps are today's 1x / 2x), and
# training seed (the s1 rows: how far one training run moves a baseline)
BASELINES: dict[str, tuple[str, float, int]] = {
    "chunk": ("chunk", 1, 0), "chunk_te": ("temporal_ensemble", 1, 0),
    "chunkhalf": ("chunk", 0.5, 0), "chunk_tehalf": ("temporal_ensemble", 0.5, 0),
    "chunk2x": ("chunk", 2, 0), "chunk_te2x": ("temporal_ensemble", 2, 0),
    "chunk4x": ("chunk", 4, 0), "chunk_te4x": ("temporal_ensemble", 4, 0),
    "chunks1": ("chunk", 1, 1), "chunk_tes1": ("temporal_ensemble", 1, 1)}
BUDGET_BEFORE = 2000   # config/chunk_demo.yaml's max_steps before 2026-12-07 (record keys kept)


def train_chunk_row(data: str, episode_dirs: list[pathlib.Path], out: pathlib.Path,
                    steps_x: float = 1, val: Any = None, val_every: int = 0,
                    seed: int = 0) -> pathlib.Path:
    """The demo's chunked baseline recipe (config/chunk_demo.yaml) trained on ``episode_dirs``
    (``steps_x`` times its steps); ``val``: held-out episodes, their loss every ``val_every``
    steps (``val_curve.json`` in the checkpoint; the weights are the same without)."""
    from arvla_baselines.chunk import ChunkTrainConfig
    from arvla_base.config import load_config, to_dict
    from arvla_base.paths import config_file
    from arvla_eval.evaluate import episode_source, fit_chunk_dims

    source = episode_source(episode_dirs)
    cfg = fit_chunk_dims(load_config(ChunkTrainConfig, config_file("chunk_demo.yaml")), source)
    if steps_x != 1:
        cfg = dataclasses.replace(cfg, optim=dataclasses.replace(
            cfg.optim, max_steps=int(round(cfg.optim.max_steps * steps_x))))
    if seed:
        cfg = dataclasses.replace(cfg, seed=seed)
    d = out / "chunk" / _key(to_dict(cfg), [str(p) for p in episode_dirs])
    if not (d / "config.json").is_file():
        from arvla_baselines.chunk import train_chunk

        t0 = time.monotonic()
        res = train_chunk(dataclasses.replace(cfg, val_every=val_every), out=d, source=source,
                          progress=False, val_source=val)
        print(f"[chunk x{steps_x}@{data}] trained on {len(source)} episodes, {time.monotonic() - t0:.0f} s"
              f"{', ' + res.val.summary() if res.val.losses else ''}", flush=True)
    return d


# training settings added after rows were cached: left out of a row's key at their defaults,
# so the checkpoints trained before them stay found
LATER_FIELDS = (("model", "rope_dims", 0), ("model", "plan_weight", "relative"),
                ("data", "state_noise", 0.0), ("data", "sample_by", "episode"),
                ("model", "regression_loss", "l1"), ("model", "huber_delta", 1.0))


def _key(*parts: Any) -> str:
    return hashlib.sha1(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:10]


def train_row(name: str, overrides: dict[str, Any], demo: Any, episodes: list[Any],
              out: pathlib.Path, perception: dict[str, Any], data: str = "ros",
              val: Any = None, val_every: int = 0,
              stage1: pathlib.Path | None = None) -> pathlib.Path:
    """The row's stage-2 checkpoint (trained here unless cached); ``val`` / ``val_every``: as
    for ``train_chunk_row`` (each stage's curve in its checkpoint); ``stage1``: train stage 2
    only, from that stage-1 checkpoint (DAgger rows)."""
    from arvla_action_expert.data import InMemoryEpisodes
    from arvla_action_expert.train import TrainConfig, train
    from arvla_base.config import from_dict, load_config, to_dict

    tcfg = load_config(TrainConfig, REPO / demo.train.expert_config)
    settings = to_dict(tcfg)
    steps_x = 1
    steps = (demo.train.stage1_steps, demo.train.stage2_steps)
    for key, value in overrides.items():
        if key == "steps_x":
            steps_x = int(value)
            continue
        if key == "dagger":
            continue
        if key == "steps":
            steps = (int(value[0]), int(value[1]))
            continue
        if "." in key:
            section, field = key.split(".")
            settings[section][field] = value
        else:
            settings[key] = value
    settings["num_threads"] = torch.get_num_threads()
    tcfg = from_dict(TrainConfig, settings)
    steps = (steps[0] * steps_x, steps[1] * steps_x)
    val_source = InMemoryEpisodes(val) if val else None
    # rows with the same training on the same demonstrations share it (before 2026-12-07 the key
    # named the settings twice instead of the demonstration set: two sets with as many episodes
    # would have shared a checkpoint; those directories are not found any more)
    settings = to_dict(tcfg)
    for section, field, default in LATER_FIELDS:   # at their defaults: earlier keys kept
        if settings[section].get(field) == default:
            del settings[section][field]
    key = [settings, steps, len(episodes), data] + ([str(stage1)] if stage1 else [])
    d = out / "train" / _key(*key)
    if (d / "DONE").is_file():
        return d / "stage2"
    source = InMemoryEpisodes(episodes)
    if stage1 is not None:                 # stage 2 only, from that stage-1 checkpoint
        stages: tuple[tuple[int, int, Any], ...] = ((2, steps[1], stage1),)
    elif steps[0] == 0:                    # no action-only stage: stage 2 from a new model
        stages = ((2, steps[1], None),)
    else:
        stages = ((1, steps[0], None), (2, steps[1], d / "stage1"))
    for stage, n, init in stages:
        scfg = dataclasses.replace(tcfg, optim=dataclasses.replace(
            tcfg.optim, max_steps=n, warmup_steps=min(tcfg.optim.warmup_steps, n // 10)))
        t0 = time.monotonic()
        res = train(dataclasses.replace(scfg, val_every=val_every), stage=stage,
                    out=d / f"stage{stage}", source=source, init=init, progress=False,
                    perception=perception, val_source=val_source)
        print(f"[{name}] stage {stage}: {n} steps, loss {res.losses[-1]:.4f}, "
              f"{time.monotonic() - t0:.0f} s{', ' + res.val.summary() if res.val.losses else ''}",
              flush=True)
    (d / "DONE").write_text("ok\n")
    return d / "stage2"


def dagger_row(name: str, demo: Any, layout: dict[str, Any], tasks: list[str], episodes: list[Any],
               out: pathlib.Path, data: str, workers: int, val: Any = None, val_every: int = 0
               ) -> tuple[pathlib.Path, pathlib.Path, list[pathlib.Path]]:
    """DAgger row ``name``: (its stage-2 checkpoint, the stage-1 checkpoint every round starts
    stage 2 from, the episode directories of every round so far). The base row's policy drives
    the robot on new seeds (``arvla_eval.dagger``, cached under ``out``/dagger), then stage 2
    is trained again on the demonstrations plus all rounds' episodes."""
    from arvla_action_expert.data import NpzEpisodeDir
    from arvla_action_expert.policy import ExpertPolicy
    from arvla_eval.collect_ros import CollectConfig
    from arvla_eval.dagger import DaggerConfig, collect_dagger
    from arvla_perception.config import token_settings

    overrides = ROWS[name][1]
    base, n, dev, dev_gripper, seed0, *more = overrides["dagger"]
    resync = float(more[0]) if more else 0.0
    perception = data_perception(data, layout)
    prefix_tokens = {"model.max_prefix_tokens": int(episodes[0].frame_tokens.shape[1])}
    if "dagger" in ROWS[base][1]:
        base_ckpt, stage1, rounds = dagger_row(base, demo, layout, tasks, episodes, out, data,
                                               workers, val, val_every)
    else:
        base_ckpt = train_row(base, {**ROWS[base][1], **prefix_tokens}, demo, episodes, out,
                              token_settings(perception), data, val, val_every)
        stage1, rounds = base_ckpt.parent / "stage1", []
    policy = ExpertPolicy.from_checkpoint(base_ckpt)
    c = demo.collect
    if data == "ros":   # the artefacts' own demonstrator
        mine = layout.get("collect", {})
        profile = mine.get("motion_profile", c.motion_profile)
        retries = int(mine.get("grasp_retries", c.grasp_retries))
    else:
        spec = parse_data(data)
        profile, retries = spec.profile, spec.retries
    for task in tasks:
        ccfg = CollectConfig(task=task, seeds=list(range(seed0, seed0 + n)),
                             control_rate_hz=demo.control_rate_hz, settle_s=c.settle_s,
                             sim=layout["sim"], perception=perception, prefixes="offline",
                             motion_profile=profile, grasp_retries=retries)
        dcfg = DaggerConfig(collect=ccfg, max_deviation=dev, max_deviation_gripper=dev_gripper,
                            expert_params={**demo.expert, **ROWS[base][2]},
                            resync_m=resync)
        key = [ccfg.cache_key_dict(), str(base_ckpt), dev, dev_gripper] + ([resync] if resync else [])
        d = out / "dagger" / f"{task}-{_key(*key)}"
        if not (d / "DONE").is_file():
            t0 = time.monotonic()
            res = collect_dagger(policy, dcfg, d, progress=False, workers=workers, resume=True)
            print(f"[{name}] {task}: {res.summary()}, {time.monotonic() - t0:.0f} s", flush=True)
            (d / "DONE").write_text(res.summary() + "\n")
        rounds = rounds + [d / "episodes"]
    driven = [ep for d in rounds for ep in NpzEpisodeDir(d)]
    print(f"[{name}] stage 2 on {len(episodes)} demonstrations + {len(driven)} policy-driven "
          "episodes", flush=True)
    ckpt = train_row(name, {**overrides, **prefix_tokens}, demo, episodes + driven, out,
                     token_settings(perception), f"{data}+{'+'.join(str(r) for r in rounds)}",
                     val, val_every, stage1=stage1)
    return ckpt, stage1, rounds


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--artefacts", default="artifacts/demo/full", help="the demo's artefacts")
    ap.add_argument("--rows", default="demo", help=f"comma list of {', '.join(ROWS)}, {', '.join(BASELINES)}")
    ap.add_argument("--seeds", default="100000:100050", help="held-out seed range A:B")
    ap.add_argument("--tasks", nargs="+")
    ap.add_argument("--out", default="runs/ablations")
    ap.add_argument("--threads", type=int, default=1, help="torch threads of this process")
    ap.add_argument("--workers", type=int, default=1,
                    help="processes for in-process collection and evaluation")
    ap.add_argument("--max-seconds", nargs="+", default=[], metavar="TASK=S",
                    help="evaluate TASK up to S sim seconds instead of the artefacts' limit "
                         "(e.g. pick_lift=8, the task's own, for policies that retry)")
    ap.add_argument("--val", metavar="DATA",
                    help="held-out demonstration set (e.g. inproc150g4mjs150 beside "
                         "inproc150g4mj): the loss on it during every training this run does, "
                         "in val_curve.json beside each checkpoint (rows already trained keep "
                         "theirs)")
    ap.add_argument("--val-every", type=int, default=250, help="steps between held-out losses")
    ap.add_argument("--table", action="store_true", help="only print the table of cached rows")
    ap.add_argument("--list", action="store_true", help="list the rows and exit")
    args = ap.parse_args()
    if args.list:
        for name, (what, tr, node) in ROWS.items():
            print(f"{name:12s} {what}  {tr or ''} {node or ''}")
        return 0
    torch.set_num_threads(args.threads)
    import logging

    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    for name in ("arvla_action_expert.train", "arvla_baselines.chunk"):
        logging.getLogger(name).setLevel(logging.INFO)   # the held-out points as they come
    from arvla.demo import load_demo_config
    from arvla_action_expert.data import NpzEpisodeDir
    from arvla_action_expert.policy import ExpertPolicy
    from arvla_baselines.chunk import ChunkPolicy
    from arvla_base.paths import config_file
    from arvla_eval.evaluate import demo_layout
    from arvla_eval.inprocess import InProcessSetup, run_inprocess
    from arvla_eval.records import load_records, save_records
    from arvla_eval.report import report_rows, rows_markdown
    from arvla_perception.config import token_settings

    art = pathlib.Path(args.artefacts)
    layout = demo_layout(art)
    if layout is None:
        print(f"{art}: not the demo's layout (run `arvla demo` first)", file=sys.stderr)
        return 2
    demo = load_demo_config(config_file("demo.yaml"), quick=False)
    a, b = (int(x) for x in args.seeds.split(":"))
    tasks = args.tasks or layout["tasks"]
    out = pathlib.Path(args.out)
    rows = [r.strip() for r in args.rows.split(",") if r.strip()]
    for r in rows:
        base_row = r.split("@")[0]
        if base_row not in ROWS and base_row not in BASELINES:
            print(f"--rows: unknown row {r!r} (--list shows them)", file=sys.stderr)
            return 2
    base_limits = {k: float(v) for k, v in (layout["max_seconds"] or {}).items()}
    limits = dict(base_limits)
    for item in args.max_seconds:
        task, sep, value = item.partition("=")
        try:
            limits[task] = float(value)
        except ValueError:
            sep = ""
        if not sep or task not in layout["tasks"] or limits[task] <= 0:
            print(f"--max-seconds: {item!r} is not TASK=SECONDS (> 0) with TASK one of "
                  f"{layout['tasks']}", file=sys.stderr)
            return 2
    val_episodes = None
    if args.val and not args.table:
        val_episodes = [ep for d in data_episodes(args.val, demo, layout, tasks, out, args.workers)
                        for ep in NpzEpisodeDir(d)]
    from arvla_baselines.chunk import ChunkTrainConfig
    from arvla_base.config import load_config

    chunk_budget = load_config(ChunkTrainConfig, config_file("chunk_demo.yaml")).optim.max_steps
    all_records = []
    for r in rows:
        base_row, _, data = r.partition("@")
        data = data or "ros"
        what, overrides, node = ROWS.get(base_row, (base_row, {}, {}))
        # the rows' node parameters are the demo recipe's (config/demo.yaml `demo.expert`), as
        # their training is, whatever the artefacts' variant sets (`--large`: ensemble_steps 16)
        params = {**demo.expert, **node}
        # the demo's own checkpoint is part of the key only for the row that evaluates it
        # (`demo` on the demo's data); every other row trains its own, and its key stays the
        # same whether or not `arvla demo` has trained one (it read "None" before)
        own = not overrides and data == "ros" and base_row not in BASELINES
        key_parts: list[Any] = [overrides, params, a, b, tasks,
                                str(layout["expert"]) if own else "None"]
        if limits != base_limits:   # other time limits than the artefacts' (earlier keys kept)
            key_parts.append(limits)
        if base_row in BASELINES and chunk_budget != BUDGET_BEFORE:   # the recipe's budget
            key_parts.append({"chunk_max_steps": chunk_budget})
        rec_path = out / "records" / f"{r}-{_key(*key_parts)}.npz"
        if not rec_path.is_file() and not args.table:
            dirs = data_episodes(data, demo, layout, tasks, out, args.workers)
            if base_row in BASELINES:
                mode, steps_x, seed = BASELINES[base_row]
                ckpt = (art / "chunk" if data == "ros" and steps_x == 1 and not seed
                        and (art / "chunk" / "config.json").is_file()
                        else train_chunk_row(data, dirs, out, steps_x, val_episodes,
                                             args.val_every, seed))
                print(f"[{r}] checkpoint {ckpt}", flush=True)   # for arvla eval --chunk
                base = ChunkPolicy.from_checkpoint(ckpt)
                policy: Any = base.with_exec(dataclasses.replace(base.exec, mode=mode))
                params = {k: v for k, v in params.items() if k != "ensemble_steps"}
            elif "dagger" in overrides:
                episodes = [ep for d in dirs for ep in NpzEpisodeDir(d)]
                ckpt, _, _ = dagger_row(base_row, demo, layout, tasks, episodes, out, data,
                                        args.workers, val_episodes, args.val_every)
                print(f"[{r}] checkpoint {ckpt}", flush=True)   # for arvla eval --expert
                policy = ExpertPolicy.from_checkpoint(ckpt)
            elif not overrides and data == "ros" and layout["expert"] is not None:
                # the demo's own expert, as `arvla demo` trained it
                policy = ExpertPolicy.from_checkpoint(layout["expert"])
            else:
                episodes = [ep for d in dirs for ep in NpzEpisodeDir(d)]
                # as many prefix tokens as the demonstrations' perception makes (the key of an
                # unchanged count stays the same: the recipe's own value)
                row_overrides = {**overrides,
                                 "model.max_prefix_tokens": int(episodes[0].frame_tokens.shape[1])}
                ckpt = train_row(r, row_overrides, demo, episodes, out,
                                 token_settings(data_perception(data, layout)), data,
                                 val_episodes, args.val_every)
                print(f"[{r}] checkpoint {ckpt}", flush=True)   # for arvla eval --expert
                policy = ExpertPolicy.from_checkpoint(ckpt)
            t0 = time.monotonic()
            recs = run_inprocess({r: policy}, InProcessSetup(
                tasks=tasks, seeds=list(range(a, b)),
                max_seconds_per_task=limits,
                sim_params=layout["sim"], perception_params=data_perception(data, layout),
                expert_params=params, progress=False), workers=args.workers)
            rec_path.parent.mkdir(parents=True, exist_ok=True)
            save_records(rec_path, recs)
            print(f"[{r}] evaluated {len(recs)} episodes in {time.monotonic() - t0:.0f} s", flush=True)
        if rec_path.is_file():
            all_records += load_records(rec_path)
    if all_records:
        print(f"\nIn process, deterministic (perception lag 2 steps), seeds {a}..{b - 1}, "
              f"time limits {limits} s:")
        print(rows_markdown(report_rows(all_records)))
        for r in rows:
            base_row, _, data = r.partition("@")
            if base_row in ROWS or data:
                what = ROWS[base_row][0] if base_row in ROWS else f"the baseline's {base_row}"
                print(f"- {r}: {what}" + (f", trained on demonstrations {data}" if data else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
