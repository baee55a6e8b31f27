"""``arvla sim``: look at the embedded robot without ROS.

  arvla sim demo --task push --seed 0 --out push.gif     # one scripted-expert episode as a GIF/MP4
  arvla sim frame --task cued_reach --out frame.png       # the first camera frame
  arvla sim collect --task cued_reach --episodes 50 --out data/cued_reach   # .npz episodes
  arvla sim bench --episodes 20                           # speeds + expert success rate per task

MP4 needs the ``imageio-ffmpeg`` plugin; GIF works with Pillow alone.
"""

from __future__ import annotations

import argparse
import pathlib
import sys

from arvla_sim.tasks import TASKS


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="arvla sim", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    for name, help_ in (("demo", "run one scripted-expert episode and save a video"),
                        ("frame", "save the first camera frame as an image"),
                        ("collect", "collect scripted-expert episodes as .npz files"),
                        ("bench", "time rendering/physics/IK and measure expert success per task")):
        s = sub.add_parser(name, help=help_)
        s.add_argument("--task", choices=sorted(TASKS), default="pick_lift")
        s.add_argument("--seed", type=int, default=0, help="(first) episode seed")
        s.add_argument("--size", type=int, default=224, help="square image size in pixels")
        if name == "bench":
            s.add_argument("--episodes", type=int, default=20, help="seeds per task for the success rate")
            continue
        s.add_argument("--out", required=True, help="output file (demo/frame) or directory (collect)")
        if name == "demo":
            s.add_argument("--fps", type=float, default=20.0)
        if name == "collect":
            s.add_argument("--episodes", type=int, default=10)
            s.add_argument("--control-rate", type=float, default=20.0, help="Hz (must divide 500)")
            s.add_argument("--frame-every", type=int, default=1, help="keep a camera frame every k steps")
            s.add_argument("--only-success", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    import imageio.v3 as iio

    from arvla_sim.collect import collect, collect_episode
    from arvla_sim.env import SimEnv, SimEnvConfig

    if args.cmd == "bench":
        return _bench(args)
    out = pathlib.Path(args.out)
    if args.cmd == "collect":
        cfg = SimEnvConfig(task=args.task, control_rate_hz=args.control_rate,
                           image_height=args.size, image_width=args.size)
        kept, rate = collect(cfg, range(args.seed, args.seed + args.episodes), out_dir=out,
                             frame_every=args.frame_every, only_success=args.only_success)
        print(f"{args.task}: expert success {rate:.0%} over {args.episodes} episodes; "
              f"{len(kept)} saved under {out}")
        return 0
    env = SimEnv(SimEnvConfig(task=args.task, image_height=args.size, image_width=args.size))
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        if args.cmd == "frame":
            env.reset(args.seed)
            iio.imwrite(out, env.render())
            print(f"wrote {out}")
            return 0
        ep = collect_episode(env, args.seed, frame_every=1)
        try:
            if out.suffix.lower() == ".gif":
                iio.imwrite(out, ep["images"], duration=1000.0 / args.fps, loop=0)
            else:
                iio.imwrite(out, ep["images"], fps=args.fps)
        except (ImportError, ValueError, OSError) as err:
            print(f"arvla sim: cannot write {out}: {err} (use a .gif name, or pip install imageio-ffmpeg "
                  "for .mp4)", file=sys.stderr)
            return 1
        print(f"{args.task} seed {args.seed}: {'SUCCESS' if ep['success'] else 'failure'} after "
              f"{len(ep['states'])} steps; wrote {out} ({len(ep['images'])} frames)")
        return 0 if ep["success"] else 1
    finally:
        env.close()


def _bench(args: argparse.Namespace) -> int:
    """Print timings (not asserted anywhere: CPU is shared) and expert success rates."""
    import time

    import numpy as np

    from arvla_sim.env import SimEnv, SimEnvConfig
    from arvla_sim.experts import make_expert

    env = SimEnv(SimEnvConfig(task="pick_lift", image_height=args.size, image_width=args.size))
    env.reset(0)
    env.render()
    n = 50
    t0 = time.perf_counter()
    for _ in range(n):
        env.render()
    render_ms = (time.perf_counter() - t0) / n * 1e3
    t0 = time.perf_counter()
    env.world.step(5000)
    phys = 5000 / (time.perf_counter() - t0)
    expert = make_expert(env)
    obs = env.reset(0)
    t0 = time.perf_counter()
    for _ in range(40):
        obs = env.step(expert.act(obs))
    step_ms = (time.perf_counter() - t0) / 40 * 1e3
    env.close()
    print(f"render {args.size}x{args.size}: {render_ms:.2f} ms/frame | physics: {phys:,.0f} steps/s "
          f"(500 Hz -> {phys / 500:.0f}x real time) | expert act + 50 ms of physics: {step_ms:.2f} ms")
    for task in sorted(TASKS):
        env = SimEnv(SimEnvConfig(task=task))
        expert = make_expert(env)
        wins, steps = 0, []
        t0 = time.perf_counter()
        for seed in range(args.seed, args.seed + args.episodes):
            obs = env.reset(seed)
            while not env.done():
                obs = env.step(expert.act(obs))
            wins += env.success()
            steps.append(env.step_index)
        wall = time.perf_counter() - t0
        print(f"{task:>11}: expert success {wins}/{args.episodes} = {wins / args.episodes:.0%}, "
              f"median {np.median(steps) / env.config.control_rate_hz:.1f} s sim per episode, "
              f"{wall / args.episodes:.2f} s wall per episode (no rendering)")
        env.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
