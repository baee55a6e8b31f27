"""``arvla demo``: the whole pipeline on a fresh clone, CPU only, in minutes.

    arvla demo                 # 3 tasks, ~15 min on 2 cores
    arvla demo --quick         # 1 task, every stage, ~2 min (CI)
    arvla demo --large         # the bigger recipe: 150 demonstrations per task, in process
    arvla demo --tasks cued_reach --out /tmp/demo --force

Stages (each prints its timing; results are cached under ``--out``, keyed by a hash of every
input that shapes them, so a second run with unchanged inputs skips straight to the report):

1. collect  -- scripted-expert demonstrations through the ROS graph (``arvla_eval.collect_ros``):
               sim + live perception + a scripted expert node, one MCAP bag per episode,
               converted to training episodes with the recorded prefixes as frame tokens;
               in lock-step (``collect.mode: lockstep``: the sim waits for each demonstrator
               tick, exact timing) or at real time; or (``collect.mode: inprocess``) the same
               demonstrator without ROS (``arvla_eval.collect_inprocess``, the same episodes
               as lock-step, several worker processes);
2. train    -- the AR expert, stage 1 (action-only) then stage 2 (prefix + sampled staleness),
               ``arvla_action_expert.train`` with ``config/expert_demo.yaml``; one expert for
               all tasks (the instruction token of the prefix tells them apart);
3. evaluate -- closed-loop episodes of the trained expert through the real ROS graph
               (``arvla_eval.rollout``) on held-out seeds;
4. report   -- success rates (AR expert vs the scripted demonstrator), smoothness, staleness,
               a GIF of an episode: ``arvla_eval.report.write_report`` when available, else a
               short Markdown summary written here.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import os
import pathlib
import shutil
import sys
import time
from typing import Any, Sequence

from arvla_base.config import ConfigError, deep_merge, from_dict, load_yaml, require, to_dict
from arvla_base.paths import config_file, package_share_dir
from arvla_eval.demo_artefacts import collect_dir, eval_dir, mark_done, read_done, train_dir

log = logging.getLogger("arvla.demo")

DEFAULT_CONFIG = config_file("demo.yaml")
CACHE_VERSION = "demo-v7"     # bump when stage code changes what a cached artefact means


# ---------------------------------------------------------------------------------------------
# Configuration


COLLECT_MODES = ("realtime", "lockstep", "inprocess")


@dataclasses.dataclass
class CollectStage:
    episodes: int = 20                 # demonstrations per task (seeds seed0 .. seed0 + n - 1)
    seed0: int = 0
    real_time_factor: float = 1.0      # sim speed; perception must keep producing prefixes
    settle_s: float = 0.25             # demonstrate "hold still" this long after success
    prefixes: str = "offline"          # "live" perception node, or the bag's frames encoded after
    processes: int = 1                 # ROS graphs collecting side by side (tasks split between)
    noise_std: float = 0.0             # DART: rad of smooth noise on the executed arm commands
    noisy_fraction: float = 0.5        # share of demonstrations perturbed (labels stay clean)
    motion_profile: str = "trapezoid"  # the demonstrator's hand motion: "trapezoid" (bounded
    #                                    acceleration), "min_jerk" (quintic segments; smoother
    #                                    demonstrations) or "min_jerk_replan" (the quintic
    #                                    re-planned every step; arvla_sim.experts.WaypointExpert)
    grasp_retries: int = 0             # pick_lift's demonstrator tries a missed grasp again (the
    #                                    fingers closed on nothing) up to this many times
    mode: str = "realtime"             # like eval.mode: "realtime" / "lockstep" through the ROS
    #                                    graph (collect_ros; lockstep: the sim waits for each tick
    #                                    of the demonstrator node), or "inprocess": the same
    #                                    demonstrator without ROS (collect_inprocess), `processes`
    #                                    worker processes per task. lockstep and inprocess give
    #                                    the same episodes (test_collect_inprocess.py)

    def __post_init__(self) -> None:
        require(self.episodes >= 1, "episodes", self.episodes, "must be >= 1")
        require(self.mode in COLLECT_MODES, "mode", self.mode, f"must be one of {list(COLLECT_MODES)}")
        require(self.mode != "inprocess" or self.prefixes == "offline", "prefixes", self.prefixes,
                "must be 'offline' with mode 'inprocess' (frames are encoded after each episode)")
        require(self.real_time_factor > 0, "real_time_factor", self.real_time_factor, "must be > 0")
        require(self.processes >= 1, "processes", self.processes, "must be >= 1")
        from arvla_sim.experts import MOTION_PROFILES

        require(self.motion_profile in MOTION_PROFILES, "motion_profile", self.motion_profile,
                f"must be one of {list(MOTION_PROFILES)}")
        require(self.grasp_retries >= 0, "grasp_retries", self.grasp_retries, "must be >= 0")


@dataclasses.dataclass
class TrainStage:
    expert_config: str = "config/expert_demo.yaml"   # TrainConfig YAML (relative: to the repo)
    stage1_steps: int = 1500
    stage2_steps: int = 2500
    history_drop: float | None = None   # overrides expert_config's data.history_drop (None: keep)
    model: dict[str, Any] = dataclasses.field(default_factory=dict)   # overrides expert_config's
    #                                     model section, key by key (e.g. predict_steps: 16)

    def __post_init__(self) -> None:
        require(self.stage1_steps >= 1, "stage1_steps", self.stage1_steps, "must be >= 1")
        require(self.stage2_steps >= 1, "stage2_steps", self.stage2_steps, "must be >= 1")
        if self.history_drop is not None:
            require(0 <= self.history_drop <= 1, "history_drop", self.history_drop,
                    "must be in [0, 1] (or null: the expert config's)")
        if self.model:   # the expert's model (torch) is imported only for a recipe that sets it
            from arvla_action_expert.model import ExpertConfig

            known = {f.name for f in dataclasses.fields(ExpertConfig)}
            for key in self.model:
                if key not in known:
                    raise ConfigError(f"model.{key}: not an expert model setting (one of "
                                      f"{sorted(known)})")

    def apply(self, tcfg: Any) -> Any:
        """``tcfg`` (a TrainConfig) with this stage's overrides; the model's values are
        validated by ExpertConfig (errors name the key)."""
        if self.history_drop is not None:
            tcfg = dataclasses.replace(tcfg, data=dataclasses.replace(
                tcfg.data, history_drop=self.history_drop))
        if self.model:
            try:
                model = dataclasses.replace(tcfg.model, **self.model)
            except ConfigError as err:
                raise ConfigError(f"train.model: {err}") from err
            tcfg = dataclasses.replace(tcfg, model=model)
        return tcfg


@dataclasses.dataclass
class EvalStage:
    episodes: int = 10                 # closed-loop episodes per task (held-out seeds)
    seed0: int = 100000
    real_time_factor: float = 1.0
    max_seconds: dict[str, float] = dataclasses.field(default_factory=dict)  # per task; default: task limit
    gif_every: int = 1                 # keep every n-th camera frame for the GIF
    mode: str = "lockstep"             # "lockstep" (deterministic, any load) or "realtime"
    lag_steps: int = 2                 # lockstep: perception latency, control periods

    def __post_init__(self) -> None:
        require(self.episodes >= 1, "episodes", self.episodes, "must be >= 1")
        require(self.mode in ("lockstep", "realtime"), "mode", self.mode,
                "must be 'lockstep' or 'realtime'")
        require(self.lag_steps >= 0, "lag_steps", self.lag_steps, "must be >= 0")
        require(self.real_time_factor > 0, "real_time_factor", self.real_time_factor, "must be > 0")
        require(self.gif_every >= 1, "gif_every", self.gif_every, "must be >= 1")


@dataclasses.dataclass
class DemoConfig:
    tasks: list[str] = dataclasses.field(default_factory=lambda: ["pick_lift", "push", "cued_reach"])
    control_rate_hz: float = 20.0
    collect: CollectStage = dataclasses.field(default_factory=CollectStage)
    train: TrainStage = dataclasses.field(default_factory=TrainStage)
    eval: EvalStage = dataclasses.field(default_factory=EvalStage)
    sim: dict[str, Any] = dataclasses.field(default_factory=dict)         # SimNode parameters
    perception: dict[str, Any] = dataclasses.field(default_factory=dict)  # PerceptionNode parameters
    expert: dict[str, Any] = dataclasses.field(default_factory=dict)      # ActionExpertNode parameters

    def __post_init__(self) -> None:
        from arvla_sim.tasks import TASKS

        bad = [t for t in self.tasks if t not in TASKS]
        require(bool(self.tasks) and not bad, "tasks", self.tasks, f"must be a non-empty subset of {sorted(TASKS)}")
        require(self.control_rate_hz > 0, "control_rate_hz", self.control_rate_hz, "must be > 0")
        for key in ("real_time_factor", "task"):
            require(key not in self.sim, f"sim.{key}", self.sim.get(key), "is set per stage, not here")


VARIANTS = ("full", "quick", "large")   # the demo, `--quick` (CI), `--large` (the bigger recipe)


def load_demo_config(path: str | os.PathLike[str], *, quick: bool = False,
                     variant: str | None = None) -> DemoConfig:
    """``demo`` section of the YAML, with the ``quick`` or ``large`` section merged on top for
    those variants (``quick=True`` is ``variant="quick"``)."""
    variant = variant or ("quick" if quick else "full")
    if variant not in VARIANTS:
        raise ConfigError(f"demo variant {variant!r}: must be one of {list(VARIANTS)}")
    data = load_yaml(path)
    if "demo" not in data:
        raise ConfigError(f"{path}: missing top-level section 'demo'")
    cfg = data["demo"]
    if variant != "full":
        if variant not in data:
            raise ConfigError(f"{path}: --{variant} needs a top-level section '{variant}'")
        cfg = deep_merge(cfg, data[variant])
    try:
        return from_dict(DemoConfig, cfg, prefix="demo." if variant == "full" else f"{variant}.")
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from err


def _hash(*parts: Any) -> str:
    text = json.dumps([CACHE_VERSION, *parts], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _repo_path(p: str) -> pathlib.Path:
    path = pathlib.Path(p)
    return path if path.is_absolute() else package_share_dir() / path


# ---------------------------------------------------------------------------------------------
# Stages


class Stage:
    """Prints '[demo] <name> ...' and '[demo] <name> done in X s', keeps the timing."""

    timings: dict[str, float] = {}

    def __init__(self, name: str, detail: str = ""):
        self.name, self.detail = name, detail

    def __enter__(self) -> "Stage":
        self.t0 = time.monotonic()
        print(f"[demo] {self.name}: {self.detail}".rstrip(": "), flush=True)
        return self

    def __exit__(self, exc_type: Any, *exc: object) -> None:
        dt = time.monotonic() - self.t0
        Stage.timings[self.name] = Stage.timings.get(self.name, 0.0) + dt
        state = "failed" if exc_type else "done"
        print(f"[demo] {self.name} {state} in {dt:.1f} s", flush=True)


def stage_collect(cfg: DemoConfig, out: pathlib.Path, task: str, *, force: bool, progress: bool,
                  domain_id: int | None) -> pathlib.Path:
    from arvla_eval.collect_ros import CollectConfig, collect_ros
    from arvla_eval.records import save_records

    c = cfg.collect
    seeds = list(range(c.seed0, c.seed0 + c.episodes))
    sim = {**cfg.sim, "real_time_factor": c.real_time_factor}
    if c.mode == "lockstep":   # the sim waits for each of the demonstrator node's ticks
        from arvla_eval.evaluate import graph_sim_params

        sim = graph_sim_params("lockstep", sim, cfg.eval.lag_steps)
        if c.prefixes == "offline":
            sim["lockstep_prefix_topic"] = ""   # no perception node to wait for
    ccfg = CollectConfig(task=task, seeds=seeds, control_rate_hz=cfg.control_rate_hz,
                         settle_s=c.settle_s, sim=sim, perception=cfg.perception, keep_bags=True,
                         noise_std=c.noise_std, noisy_fraction=c.noisy_fraction,
                         prefixes=c.prefixes, motion_profile=c.motion_profile,
                         grasp_retries=c.grasp_retries)
    inprocess = c.mode == "inprocess"
    key = (_hash("collect", ccfg.cache_key_dict(), "inprocess") if inprocess
           else _hash("collect", ccfg.cache_key_dict()))
    d = collect_dir(out, task, key)
    info = read_done(d)
    how = (f"in process ({c.processes} workers)" if inprocess
           else f"through ROS ({c.mode.replace('realtime', 'real time')})")
    with Stage(f"collect {task}", f"{len(seeds)} scripted demonstrations {how} -> {d}"):
        if info is not None and not force:
            print(f"[demo]   cached: {info['episodes']} episodes, scripted success "
                  f"{info['successes']}/{info['n']}")
            return d
        if d.exists():
            shutil.rmtree(d)
        if inprocess:
            from arvla_eval.collect_inprocess import collect_inprocess

            result = collect_inprocess(ccfg, d, progress=progress, workers=c.processes)
        else:
            result = collect_ros(ccfg, d, progress=progress, domain_id=domain_id, log_level="warn")
        save_records(d / "records.npz", result.records)
        wins = sum(r.success for r in result.records)
        if not result.episodes:
            raise RuntimeError(f"collect {task}: no usable demonstration out of {len(seeds)} "
                               f"(scripted success {wins}/{len(seeds)})")
        mark_done(d, {"episodes": len(result.episodes), "successes": wins, "n": len(seeds)})
        print(f"[demo]   {len(result.episodes)} episodes, scripted success {wins}/{len(seeds)}")
    return d


def _collect_tasks(cfg: DemoConfig, out: pathlib.Path, tasks: list[str], force: bool,
                   progress: bool, domain_id: int | None) -> list[str]:
    """One collection process: its tasks in turn, on its own ROS domain."""
    os.environ.setdefault("MUJOCO_GL", "egl")
    return [str(stage_collect(cfg, out, t, force=force, progress=progress, domain_id=domain_id))
            for t in tasks]


def collect_all(cfg: DemoConfig, out: pathlib.Path, *, force: bool, progress: bool,
                domain_id: int | None) -> list[pathlib.Path]:
    """Every task's demonstrations, in ``collect.processes`` ROS graphs side by side.

    Why several graphs at real time rather than one faster: the command -> joint state loop
    costs wall time, so at 3x real time the robot lagged the commands by ~1 step more than at
    1x (and jittered), and an expert trained on that data failed in the 1x evaluation. Each
    graph gets its own ROS domain (they must not hear each other), so with ROS_DOMAIN_ID set by
    the user collection stays in one process on that domain.
    """
    n = min(cfg.collect.processes, len(cfg.tasks))
    if n <= 1 or domain_id is None or cfg.collect.mode == "inprocess":  # in process: workers per task
        return [pathlib.Path(p) for p in
                _collect_tasks(cfg, out, list(cfg.tasks), force, progress, domain_id)]
    from arvla_sim.tasks import make_task

    # longest tasks first, each to the least loaded process
    load, groups = [0.0] * n, [[] for _ in range(n)]
    for task in sorted(cfg.tasks, key=lambda t: -make_task(t).max_duration_s):
        i = load.index(min(load))
        groups[i].append(task)
        load[i] += make_task(task).max_duration_s
    import multiprocessing as mp

    with Stage("collect", f"{n} ROS graphs side by side: " + " | ".join(
            ", ".join(g) for g in groups)):
        with mp.get_context("spawn").Pool(n) as pool:
            jobs = [pool.apply_async(_collect_tasks, (cfg, out, g, force, progress and i == 0,
                                                      domain_id + 1 + i))
                    for i, g in enumerate(groups)]
            done = {pathlib.Path(p).name.rsplit("-", 1)[0]: pathlib.Path(p)
                    for j in jobs for p in j.get()}
    return [done[t] for t in cfg.tasks]


def stage_train(cfg: DemoConfig, out: pathlib.Path, collect_dirs: Sequence[pathlib.Path], *,
                force: bool, progress: bool) -> pathlib.Path:
    from arvla_base.config import load_config
    from arvla_action_expert.data import InMemoryEpisodes, NpzEpisodeDir
    from arvla_action_expert.train import TrainConfig, train
    from arvla_perception.config import token_settings

    t = cfg.train
    config_path = _repo_path(t.expert_config)
    tcfg = t.apply(load_config(TrainConfig, config_path))
    # the prefixes' perception settings go into the checkpoint: bring-up starts the same perception
    perception = token_settings(cfg.perception)
    key = _hash("train", to_dict(tcfg), t.stage1_steps, t.stage2_steps, [p.name for p in collect_dirs],
                perception)
    d = train_dir(out, key)
    info = read_done(d)
    with Stage("train", f"AR expert ({config_path.name}), stage 1 {t.stage1_steps} + stage 2 "
                        f"{t.stage2_steps} steps -> {d}"):
        if info is not None and not force:
            print(f"[demo]   cached: stage 2 loss {info['stage2_loss']:.4f}")
            return d / "stage2"
        if d.exists():
            shutil.rmtree(d)
        episodes = []
        for cd in collect_dirs:
            src = NpzEpisodeDir(cd / "episodes")
            episodes += [src[i] for i in range(len(src))]
        source = InMemoryEpisodes(episodes)
        n_tokens = max((e.frame_tokens.shape[1] for e in episodes if e.frame_tokens.shape[0]), default=0)
        if n_tokens > tcfg.model.max_prefix_tokens:  # a finer perception grid than the recipe's
            print(f"[demo]   {n_tokens} prefix tokens per frame: model.max_prefix_tokens "
                  f"{tcfg.model.max_prefix_tokens} -> {n_tokens}")
            tcfg = dataclasses.replace(tcfg, model=dataclasses.replace(
                tcfg.model, max_prefix_tokens=int(n_tokens)))
        steps = sum(e.length for e in episodes)
        print(f"[demo]   {len(episodes)} episodes, {steps} steps, "
              f"{sum(len(e.frame_steps) for e in episodes)} frames")
        info = {"episodes": len(episodes), "steps": steps}
        for stage, n, init in ((1, t.stage1_steps, None), (2, t.stage2_steps, d / "stage1")):
            scfg = dataclasses.replace(tcfg, optim=dataclasses.replace(
                tcfg.optim, max_steps=n, warmup_steps=min(tcfg.optim.warmup_steps, n // 10)))
            t0 = time.monotonic()
            res = train(scfg, stage=stage, out=d / f"stage{stage}", source=source, init=init,
                        progress=progress, perception=perception)
            k = max(1, len(res.losses) // 10)
            first, last = sum(res.losses[:k]) / k, sum(res.losses[-k:]) / k
            info[f"stage{stage}_loss"] = last
            info[f"stage{stage}_s"] = time.monotonic() - t0
            print(f"[demo]   stage {stage}: loss {first:.4f} -> {last:.4f} in "
                  f"{time.monotonic() - t0:.1f} s")
        mark_done(d, info)
    return d / "stage2"


def stage_eval(cfg: DemoConfig, out: pathlib.Path, checkpoint: pathlib.Path, *, force: bool,
               progress: bool, domain_id: int | None) -> pathlib.Path:
    from arvla_action_expert.policy import ExpertPolicy
    from arvla_eval.records import save_records
    from arvla_eval.evaluate import graph_sim_params
    from arvla_eval.rollout import RolloutGraph, ar_expert_factory, run_episodes
    from arvla_sim.tasks import make_task

    e = cfg.eval
    seeds = list(range(e.seed0, e.seed0 + e.episodes))
    key = _hash("eval", str(checkpoint.parent.name), to_dict(e), cfg.tasks, cfg.sim, cfg.perception,
                cfg.expert)
    d = eval_dir(out, key)
    path = d / "records.npz"
    with Stage("evaluate", f"{len(seeds)} closed-loop episodes per task through ROS ({e.mode}) -> {d}"):
        if read_done(d) is not None and not force:
            print("[demo]   cached")
            return path
        d.mkdir(parents=True, exist_ok=True)
        policy = ExpertPolicy.from_checkpoint(checkpoint)
        sim = graph_sim_params(e.mode, {**cfg.sim, "real_time_factor": e.real_time_factor}, e.lag_steps)
        records = []
        with RolloutGraph(task=cfg.tasks[0], expert_factory=ar_expert_factory(policy, cfg.expert),
                          sim_overrides=sim, perception_overrides=cfg.perception, keep_frames=True,
                          frame_every=e.gif_every, domain_id=domain_id, log_level="warn") as graph:
            for task in cfg.tasks:
                t0 = time.monotonic()
                max_s = e.max_seconds.get(task) or make_task(task).max_duration_s
                recs = run_episodes(policy, task=task, seeds=seeds, max_seconds=max_s, graph=graph,
                                    progress=progress, policy_name="ar")
                records += recs
                wins = sum(r.success for r in recs)
                print(f"[demo]   {task}: AR expert success {wins}/{len(recs)} "
                      f"({time.monotonic() - t0:.1f} s)")
        save_records(path, records)
        mark_done(d, {"episodes": len(records)})
    return path


# ---------------------------------------------------------------------------------------------
# Report


def write_gif(frames: Any, path: pathlib.Path, fps: float) -> pathlib.Path:
    """Animated GIF of (F, H, W, 3) uint8 frames (Pillow, a matplotlib dependency)."""
    from PIL import Image

    images = [Image.fromarray(f) for f in frames]
    images[0].save(path, save_all=True, append_images=images[1:], duration=int(1000 / fps), loop=0)
    return path


def minimal_report(records: Sequence[Any], out_dir: pathlib.Path, *, title: str,
                   timings: dict[str, float], fps: float) -> pathlib.Path:
    """Markdown summary (used when arvla_eval.report is not available)."""
    from arvla_eval.records import summarize, summary_table

    out_dir.mkdir(parents=True, exist_ok=True)
    lines = [f"# {title}", "", summary_table(summarize(records)), ""]
    ar = [r for r in records if r.policy == "ar" and r.frames is not None and len(r.frames) > 1]
    if ar:
        best = next((r for r in ar if r.success), ar[0])
        gif = write_gif(best.frames, out_dir / "episode.gif", fps)
        lines += [f"![{best.task} seed {best.seed}](episode.gif)", "",
                  f"GIF: `{gif}` -- AR expert, task {best.task}, seed {best.seed}, "
                  f"{'success' if best.success else 'failure'}.", ""]
    lines += ["## Stage timings", "", "| stage | seconds |", "|---|---|"]
    lines += [f"| {k} | {v:.1f} |" for k, v in timings.items()]
    path = out_dir / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def stage_report(cfg: DemoConfig, out: pathlib.Path, records: list[Any], *, title: str) -> pathlib.Path:
    from arvla_eval.records import summarize, summary_table

    with Stage("report", str(out / "report")):
        report_dir = out / "report"
        path = None
        try:
            from arvla_eval.report import write_report
        except ImportError:
            write_report = None
        if write_report is not None:
            try:
                from arvla_eval.evaluate import MODES

                e = cfg.eval
                mode = MODES[e.mode].format(lag=e.lag_steps)
                path = write_report(records, report_dir, title=f"{title}, {e.mode}",
                                    notes=f"Evaluation mode: {mode}. Seeds {e.seed0}.."
                                          f"{e.seed0 + e.episodes - 1} per task.")
            except Exception as err:  # noqa: BLE001 - the demo must end with a report
                print(f"[demo]   arvla_eval.report failed ({type(err).__name__}: {err}); "
                      "writing the minimal report")
        fps = float(cfg.sim.get("camera_rate_hz", 10.0)) / cfg.eval.gif_every
        if path is None:
            path = minimal_report(records, report_dir, title=title, timings=dict(Stage.timings), fps=fps)
        print(summary_table(summarize(records)))
        print(f"[demo] report: {path}")
    return pathlib.Path(path)


# ---------------------------------------------------------------------------------------------
# Command line


def run_demo(cfg: DemoConfig, out: pathlib.Path, *, force: bool = False, progress: bool = True,
             title: str = "arvla demo") -> pathlib.Path:
    from arvla_eval.records import load_records
    from arvla_eval.rollout import default_domain_id

    Stage.timings = {}
    t0 = time.monotonic()
    out.mkdir(parents=True, exist_ok=True)
    domain_id = default_domain_id()
    collect_dirs = collect_all(cfg, out, force=force, progress=progress, domain_id=domain_id)
    checkpoint = stage_train(cfg, out, collect_dirs, force=force, progress=progress)
    eval_path = stage_eval(cfg, out, checkpoint, force=force, progress=progress, domain_id=domain_id)
    records = []
    for cd in collect_dirs:
        records += load_records(cd / "records.npz")
    records += load_records(eval_path)
    Stage.timings["total"] = time.monotonic() - t0
    report = stage_report(cfg, out, records, title=title)
    Stage.timings["total"] = time.monotonic() - t0
    (out / "timings.json").write_text(json.dumps(Stage.timings, indent=1))
    print("[demo] timings: " + ", ".join(f"{k} {v:.1f} s" for k, v in Stage.timings.items()))
    return report


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="arvla demo", description=__doc__.split("\n\n")[0])
    size = ap.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="CI variant: 1 task, few episodes/steps (< 3 min)")
    size.add_argument("--large", action="store_true",
                      help="the bigger recipe (section 'large' of the config: 150 demonstrations "
                           "per task collected in process, a 4x4 perception grid; ~30-35 min on 2 cores)")
    ap.add_argument("--out", default="artifacts/demo", help="artefact directory (default artifacts/demo)")
    ap.add_argument("--tasks", nargs="+", help="override the task list")
    ap.add_argument("--force", action="store_true", help="recompute every stage (ignore the cache)")
    ap.add_argument("--config", default=str(DEFAULT_CONFIG), help="demo YAML (sections demo, quick, large)")
    ap.add_argument("--no-progress", action="store_true", help="no tqdm bars")
    ap.add_argument("--baselines", action="store_true",
                    help="then `arvla eval --artefacts` on the result: the chunked baselines "
                         "trained on the same episodes, same seeds, one comparison table")
    args = ap.parse_args(argv)
    os.environ.setdefault("MUJOCO_GL", "egl")
    try:
        variant = "quick" if args.quick else "large" if args.large else "full"
        cfg = load_demo_config(args.config, variant=variant)
        if args.tasks:
            cfg = from_dict(DemoConfig, {**to_dict(cfg), "tasks": args.tasks}, prefix="--tasks ")
    except ConfigError as err:
        print(f"arvla demo: {err}", file=sys.stderr)
        return 2
    out = pathlib.Path(args.out) / variant
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    print(f"[demo] {variant} run: tasks {cfg.tasks}, artefacts in {out}")
    run_demo(cfg, out, force=args.force, progress=not args.no_progress,
             title=f"arvla demo ({variant})")
    if args.baselines:
        from arvla.commands.eval import cli_main as eval_main

        t0 = time.monotonic()
        print(f"[demo] baselines: arvla eval --artefacts {out}", flush=True)
        rc = eval_main(["--artefacts", str(out), *(["--quick"] if args.quick else []),
                        *(["--no-progress"] if args.no_progress else [])])
        print(f"[demo] baselines {'done' if rc == 0 else 'failed'} in {time.monotonic() - t0:.1f} s")
        return rc
    return 0
