"""Bags -> training episodes (docs/CONTRACTS.md, "Episodes"), resampled on the control-step grid.

A demonstration recorded with ``arvla record`` (or ``ros2 bag record``) holds asynchronous
streams: joint states at the driver's rate, trajectory commands at the controller's, prefixes
at perception's 1-10 Hz. The expert is trained on one token per control step, so everything is
put on a grid ``t_k = t0 + k * dt`` (``dt = 1 / control_rate_hz``):

- ``states[k]``: the joint positions (by joint NAME) measured at ``t_k`` -- the message closest
  to ``t_k`` (default), the newest at or before it ("hold"), or linearly interpolated.
- ``actions[k]``: the command in effect when step k+1 begins, i.e. the first point of the
  newest JointTrajectory received before ``t_k + dt`` (the expert publishes the action of
  step k right after tick k, one compute latency later). Without a command topic: ``states[k + 1]`` (the next state).
- frames: each VLPrefix's capture step ``round((header.stamp - t0) / dt)`` (the same rule the
  node uses, ``arvla_action_expert.reanchor.time_to_step``), its tokens as ``(N, D)``; or, when
  the bag has no prefixes, the camera images themselves (tokens to be computed later).

Time base: capture and measurement times are header stamps. Commands often carry a zero stamp
("execute now"); their receive (bag) time is then moved onto the stamp clock by the median
offset between receive time and header stamp of /joint_states, so recordings made with wall
time of a simulation publishing sim-time stamps still line up.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from typing import Any, Iterable, Literal, Sequence

import numpy as np

from arvla_base.rosutil import stamp_to_ns
from arvla_base.config import require
from arvla_base.episode import (EpisodeError, episode_metadata,
                                load_episode, save_episode, validate_episode)
from arvla_action_expert.reanchor import time_to_step
from arvla_data.bag import BagReader

__all__ = [
    "BagEpisodeConfig",
    "EpisodeError",
    "bag_to_episode",
    "episode_metadata",
    "image_to_rgb",
    "load_episode",
    "save_episode",
    "validate_episode",
]


JOINT_STATE = "sensor_msgs/msg/JointState"
TRAJECTORY = "trajectory_msgs/msg/JointTrajectory"
VL_PREFIX = "arvla_msgs/msg/VLPrefix"
IMAGE = "sensor_msgs/msg/Image"
STRING = "std_msgs/msg/String"


@dataclasses.dataclass
class BagEpisodeConfig:
    """How to cut a bag into an episode (YAML section ``bag2episodes``)."""

    # Rate of the control-step grid, Hz (the rate the expert will run at).
    control_rate_hz: float = 20.0
    # Joint order of states/actions; [] = the joints of the first command (the controller's
    # joints, in its order), or of the first JointState message when there are no commands.
    joint_names: list[str] = dataclasses.field(default_factory=list)
    joint_states_topic: str = "/joint_states"
    # Commanded trajectory; "" = derive actions from the next state.
    command_topic: str = "/arm_controller/joint_trajectory"
    # VLPrefix topic; "" = do not read prefixes.
    prefix_topic: str = "/arvla/vl_prefix"
    # Camera topic, read only when keep_images: the images of the prefix frames, or, in a bag
    # without prefixes, the frames themselves (tokens to be computed later).
    image_topic: str = "/camera/image_raw"
    # Store the (F, H, W, 3) RGB images of the frames in the episode.
    keep_images: bool = False
    # Instruction topic (std_msgs/String); its first message becomes the task.
    instruction_topic: str = "/arvla/instruction"
    # Task text; "" = from the instruction topic (or the prefixes' instruction).
    task: str = ""
    # "nearest": the joint state closest in time to each step (robust when the driver's stamps
    # jitter around the grid: a state stamped 0.1 ms after a step still belongs to it);
    # "hold": newest state at or before each step (strictly causal); "linear": interpolate.
    state_sampling: Literal["nearest", "hold", "linear"] = "nearest"
    # Drop a command topic that is missing from a bag (fall back to next-state actions) instead
    # of failing.
    command_optional: bool = False

    def __post_init__(self) -> None:
        require(self.control_rate_hz > 0, "control_rate_hz", self.control_rate_hz, "must be > 0")
        require(len(set(self.joint_names)) == len(self.joint_names), "joint_names",
                self.joint_names, "must not repeat a name")
        require(bool(self.joint_states_topic), "joint_states_topic", self.joint_states_topic,
                "must name a topic")

    @property
    def period_ns(self) -> int:
        return int(round(1e9 / self.control_rate_hz))


# ---------------------------------------------------------------------------------------------
# Message helpers


def image_to_rgb(msg: Any) -> np.ndarray:
    """sensor_msgs/Image (rgb8, bgr8, rgba8, bgra8, mono8) -> (H, W, 3) uint8 RGB."""
    channels = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1}
    enc = str(msg.encoding).lower()
    if enc not in channels:
        raise EpisodeError(f"image encoding {msg.encoding!r} not supported "
                           f"(supported: {sorted(channels)})")
    h, w, c = int(msg.height), int(msg.width), channels[enc]
    data = np.frombuffer(bytes(msg.data) if not isinstance(msg.data, np.ndarray) else msg.data,
                         dtype=np.uint8)
    step = int(msg.step) or w * c
    if step < w * c or data.size < h * step:
        raise EpisodeError(f"image {w}x{h} {enc}: step {step} and {data.size} bytes do not hold "
                           f"{h} rows of {w * c} bytes")
    img = data[: h * step].reshape(h, step)[:, : w * c].reshape(h, w, c)
    if enc == "mono8":
        return np.repeat(img, 3, axis=2)
    if enc.startswith("bgr"):
        img = img[:, :, [2, 1, 0]]
    return np.ascontiguousarray(img[:, :, :3])


def _positions_by_name(names: Sequence[str], values: Sequence[float], joint_names: Sequence[str],
                       what: str) -> np.ndarray:
    names = list(names)
    values = np.asarray(values, dtype=np.float64)
    if len(values) != len(names):
        raise EpisodeError(f"{what}: {len(names)} joint names but {len(values)} positions")
    index = {n: i for i, n in enumerate(names)}
    missing = [j for j in joint_names if j not in index]
    if missing:
        raise EpisodeError(f"{what}: unknown joint name(s) {missing}; the message names {names}")
    return values[[index[j] for j in joint_names]]


# ---------------------------------------------------------------------------------------------
# Bag -> episode


def _check_type(topics: dict[str, Any], topic: str, expected: str, path: pathlib.Path) -> None:
    have = topics[topic].msgtype
    if have != expected:
        raise EpisodeError(f"bag {path}: topic {topic} has type {have}, expected {expected}")


@dataclasses.dataclass
class _BagStreams:
    """What one pass over a bag keeps: joint states and commands as (names, positions), mapped
    to joint order later (the default order is the controller's, known once the first command
    is read), prefixes, images (by stamp) and instructions."""

    command_topic: str                                  # "" = none: actions from the next state
    states_t: list[int] = dataclasses.field(default_factory=list)     # stamp (else log time)
    states_log: list[int] = dataclasses.field(default_factory=list)   # log time
    raw_states: list[tuple[list[str], Any, int]] = dataclasses.field(default_factory=list)
    raw_commands: list[tuple[int, bool, list[str], Any]] = dataclasses.field(
        default_factory=list)                           # (time, stamped?, names, positions)
    prefixes: list[Any] = dataclasses.field(default_factory=list)
    images: dict[int, Any] = dataclasses.field(default_factory=dict)
    instructions: list[str] = dataclasses.field(default_factory=list)


def _read_bag(path: pathlib.Path, cfg: BagEpisodeConfig) -> _BagStreams:
    """The topics ``cfg`` asks for, type-checked, read in one pass."""
    with BagReader(path) as reader:
        topics = reader.topics
        if reader.message_count == 0 or not topics:
            raise EpisodeError(f"bag {path} is empty (no messages)")
        if cfg.joint_states_topic not in topics:
            raise EpisodeError(f"bag {path} has no joint states topic {cfg.joint_states_topic}; "
                               f"it has: {sorted(topics)}")
        _check_type(topics, cfg.joint_states_topic, JOINT_STATE, path)
        command_topic = cfg.command_topic
        if command_topic and command_topic not in topics:
            if not cfg.command_optional:
                raise EpisodeError(
                    f"bag {path} has no command topic {command_topic}; it has: {sorted(topics)} "
                    "(set command_topic: '' to derive actions from the next state)")
            command_topic = ""
        wanted = {cfg.joint_states_topic: JOINT_STATE}
        if command_topic:
            wanted[command_topic] = TRAJECTORY
        # Images only when kept: a camera stream is by far the largest thing in a bag.
        for topic, typ in ((cfg.prefix_topic, VL_PREFIX),
                           (cfg.image_topic if cfg.keep_images else "", IMAGE),
                           (cfg.instruction_topic, STRING)):
            if topic and topic in topics:
                wanted[topic] = typ
        for topic, typ in wanted.items():
            _check_type(topics, topic, typ, path)

        b = _BagStreams(command_topic)
        for topic, t_log, msg, _ in reader.messages(list(wanted)):
            if topic == cfg.joint_states_topic:
                b.states_t.append(stamp_to_ns(msg.header.stamp) or t_log)
                b.states_log.append(t_log)
                b.raw_states.append((list(msg.name), msg.position, t_log))
            elif topic == command_topic:
                if not msg.points:
                    continue  # an empty trajectory stops the controller; no target to learn
                stamp = stamp_to_ns(msg.header.stamp)
                b.raw_commands.append((stamp if stamp else t_log, bool(stamp), list(msg.joint_names),
                                       msg.points[0].positions))
            elif topic == cfg.prefix_topic:
                b.prefixes.append(msg)
            elif topic == cfg.image_topic:
                b.images[stamp_to_ns(msg.header.stamp) or t_log] = msg
            elif topic == cfg.instruction_topic:
                b.instructions.append(str(msg.data))
    return b


def _on_the_grid(path: pathlib.Path, cfg: BagEpisodeConfig, b: _BagStreams,
                 state_names: list[str]) -> tuple[np.ndarray, np.ndarray, int]:
    """(states, actions, t0 ns): the joint states sampled on the control-step grid and the
    command in effect at each step (else the next state), cut to the demonstration."""
    command_topic = b.command_topic
    state_rows = [_positions_by_name(n, q, state_names,
                                     f"bag {path}: {cfg.joint_states_topic} message {i} (t={t} ns)")
                  for i, (n, q, t) in enumerate(b.raw_states)]
    commands = [(t, stamped, _positions_by_name(n, q, state_names,
                                                f"bag {path}: {command_topic} command at t={t} ns"))
                for t, stamped, n, q in b.raw_commands]

    order = np.argsort(np.asarray(b.states_t), kind="stable")
    st = np.asarray(b.states_t, dtype=np.int64)[order]
    sv = np.stack(state_rows)[order]
    offset = int(np.median(np.asarray(b.states_log, dtype=np.int64)[order] - st))

    period = cfg.period_ns
    t0 = int(st[0])
    n_steps = (int(st[-1]) - t0) // period + 1
    grid = t0 + period * np.arange(n_steps, dtype=np.int64)

    if command_topic and commands:
        ct = np.asarray([t if stamped else t - offset for t, stamped, _ in commands], np.int64)
        corder = np.argsort(ct, kind="stable")
        ct, cv = ct[corder], np.stack([c[2] for c in commands])[corder]
        # newest command issued strictly before step k+1 begins (one at t_{k+1} is step k+1's)
        idx = np.searchsorted(ct, grid + period, side="left") - 1
        valid = idx >= 0
        if not valid.any():
            raise EpisodeError(f"bag {path}: no command on {command_topic} falls inside the "
                               "joint-state time range")
        # Steps before the first command have no action; steps after the last command's tick
        # belong to no demonstration (the commander stopped): both are cut off.
        first = int(np.argmax(valid))
        keep = grid[first:] <= ct[-1]
        grid, idx = grid[first:][keep], idx[first:][keep]
        t0 = int(grid[0])
        states = _sample_states(st, sv, grid, cfg.state_sampling)
        actions = cv[idx]
    elif command_topic:
        raise EpisodeError(f"bag {path}: topic {command_topic} holds no trajectory with points")
    else:
        all_states = _sample_states(st, sv, grid, cfg.state_sampling)
        states, actions = all_states[:-1], all_states[1:]
        grid = grid[:-1]
    T = len(states)
    if T < 2:
        raise EpisodeError(f"bag {path}: only {T} control step(s) at {cfg.control_rate_hz} Hz "
                           f"(joint states span {(int(st[-1]) - int(st[0])) / 1e9:.3f} s)")
    return states, actions, t0


def bag_to_episode(path: str | os.PathLike[str], config: BagEpisodeConfig | None = None
                   ) -> dict[str, np.ndarray]:
    """Read one bag and return one episode dict (see module docstring and CONTRACTS.md)."""
    cfg = config or BagEpisodeConfig()
    path = pathlib.Path(path)
    b = _read_bag(path, cfg)
    if not b.raw_states:
        raise EpisodeError(f"bag {path}: no messages on {cfg.joint_states_topic}")
    state_names = (list(cfg.joint_names) or (b.raw_commands[0][2] if b.raw_commands else [])
                   or b.raw_states[0][0])
    if not state_names:
        raise EpisodeError(f"bag {path}: first message on {cfg.joint_states_topic} names no joints")

    states, actions, t0 = _on_the_grid(path, cfg, b, state_names)
    T = len(states)
    episode: dict[str, np.ndarray] = {
        "states": states.astype(np.float32),
        "actions": actions.astype(np.float32),
    }
    model_id, frame_tokens, frame_steps, frame_images = _frames(
        path, cfg, b.prefixes, b.images, t0, cfg.period_ns, T)
    episode["frame_tokens"] = frame_tokens
    episode["frame_steps"] = frame_steps
    if frame_images is not None:
        episode["images"] = frame_images
    task = cfg.task or (b.instructions[0] if b.instructions else "") or \
        next((str(p.instruction) for p in b.prefixes if p.instruction), "")
    episode.update(episode_metadata(cfg.control_rate_hz, model_id, state_names, task))
    episode["source"] = np.asarray(str(path))
    validate_episode(episode, where=f"bag {path}")
    return episode


def _sample_states(t: np.ndarray, v: np.ndarray, grid: np.ndarray, how: str) -> np.ndarray:
    if how == "linear":
        tf, gf = (t - t[0]).astype(np.float64), (grid - t[0]).astype(np.float64)
        return np.stack([np.interp(gf, tf, v[:, j]) for j in range(v.shape[1])], axis=1)
    if how == "nearest":
        right = np.clip(np.searchsorted(t, grid, side="left"), 0, len(t) - 1)
        left = np.clip(right - 1, 0, None)
        take_left = np.abs(grid - t[left]) <= np.abs(t[right] - grid)
        return v[np.where(take_left, left, right)]
    idx = np.searchsorted(t, grid, side="right") - 1
    return v[np.clip(idx, 0, None)]


def _frames(path: pathlib.Path, cfg: BagEpisodeConfig, prefixes: list[Any],
            images: dict[int, Any], t0: int, period: int, T: int
            ) -> tuple[str, np.ndarray, np.ndarray, np.ndarray | None]:
    """(model_id, frame_tokens (F, N, D), frame_steps (F,), images (F, H, W, 3) or None)."""
    if prefixes:
        by_step: dict[int, Any] = {}
        for p in sorted(prefixes, key=lambda p: stamp_to_ns(p.header.stamp)):
            step = time_to_step(stamp_to_ns(p.header.stamp), t0, period)
            if 0 <= step < T:
                by_step[step] = p  # two frames on one step: keep the newer capture
        if not by_step:
            raise EpisodeError(f"bag {path}: none of the {len(prefixes)} prefixes on "
                               f"{cfg.prefix_topic} was captured inside the episode's {T} steps")
        steps = sorted(by_step)
        first = by_step[steps[0]]
        n, d, model_id = int(first.token_count), int(first.dim), str(first.model_id)
        tokens = np.empty((len(steps), n, d), np.float32)
        for i, s in enumerate(steps):
            p = by_step[s]
            if (int(p.token_count), int(p.dim)) != (n, d):
                raise EpisodeError(f"bag {path}: prefix frame_seq {p.frame_seq} has "
                                   f"{p.token_count}x{p.dim} tokens, the first has {n}x{d}")
            if str(p.model_id) != model_id:
                raise EpisodeError(f"bag {path}: prefix frame_seq {p.frame_seq} comes from model "
                                   f"{p.model_id!r}, the first from {model_id!r}")
            data = np.asarray(p.data, dtype=np.float32)
            if data.size != n * d:
                raise EpisodeError(f"bag {path}: prefix frame_seq {p.frame_seq} has {data.size} "
                                   f"values, token_count x dim = {n * d}")
            tokens[i] = data.reshape(n, d)
        frame_images = None
        if cfg.keep_images:
            stamps = [stamp_to_ns(by_step[s].header.stamp) for s in steps]
            missing = [s for s in stamps if s not in images]
            if missing:
                raise EpisodeError(f"bag {path}: keep_images is set but {len(missing)} prefix "
                                   f"capture stamps (first {missing[0]} ns) have no image on "
                                   f"{cfg.image_topic}")
            frame_images = np.stack([image_to_rgb(images[s]) for s in stamps])
        return model_id, tokens, np.asarray(steps, np.int64), frame_images
    if images:
        by_step = {}
        for stamp in sorted(images):
            step = time_to_step(stamp, t0, period)
            if 0 <= step < T:
                by_step[step] = images[stamp]
        steps = sorted(by_step)
        frame_images = np.stack([image_to_rgb(by_step[s]) for s in steps]) if steps else None
        # No tokens yet: (F, 0, 0) keeps F aligned with frame_steps; perception fills them later.
        return "", np.zeros((len(steps), 0, 0), np.float32), np.asarray(steps, np.int64), frame_images
    return "", np.zeros((0, 0, 0), np.float32), np.zeros((0,), np.int64), None


# ---------------------------------------------------------------------------------------------
# Command line: arvla bag2episodes


def bags_to_episodes(bags: Iterable[str | os.PathLike[str]], output_dir: str | os.PathLike[str],
                     config: BagEpisodeConfig, *, progress: bool = True) -> list[pathlib.Path]:
    """Convert each bag to ``<output_dir>/<bag name>.npz``; stops at the first bad bag."""
    from tqdm import tqdm

    bags = [pathlib.Path(b) for b in bags]
    out = pathlib.Path(output_dir)
    written = []
    for bag in tqdm(bags, desc="bags -> episodes", unit="bag", disable=not progress):
        name = bag.stem if bag.is_file() else bag.name
        written.append(save_episode(out / f"{name}.npz", bag_to_episode(bag, config)))
    return written


