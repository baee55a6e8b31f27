"""Demonstrations through the SAME ROS interface the learned expert uses, recorded as bags.

Per episode, in one process (``rollout.RolloutGraph``):

- ``SimNode`` runs the task. With ``prefixes: live`` a ``PerceptionNode`` turns its camera
  frames into ``VLPrefix``es as at test time (frames dropped when it falls behind); with
  ``prefixes: offline`` (the demo's choice) every recorded camera frame is encoded after the
  episode by the same backbone, batched;
- ``ScriptedExpertNode`` is the demonstrator: each control tick (sim time) it reads
  ``/joint_states`` and publishes one ``JointTrajectory`` point (the scripted IK expert's
  absolute joint targets, one period ahead) to the controller topic, plus an ``ExpertStatus``
  so that the episode monitor records it like any expert. It reads the privileged scene state
  (object / goal poses) from the in-process ``SimEnv`` -- allowed for the demonstrator only;
- ``BagTap`` writes camera, joint states, prefixes, commands and the instruction (raw CDR, as
  delivered) into one MCAP bag per episode (``arvla_data.bag.BagRecorder``).

Then ``arvla_data.episodes`` converts each bag to a training episode (``.npz``) on the
control-step grid, with the recorded prefixes as ``frame_tokens``.

Live or offline: live prefixes carry the deployed pipeline's gaps and latency, but on 2 CPU
cores the node follows the camera only at ``real_time_factor`` ~1; at 3x it kept ~1 frame in 4
and the expert trained on those solved 1/30 episodes. Offline encoding keeps every frame (same
backbone, same model id, the camera's own capture stamps), lets the sim run 3x faster than real
time, and the perception delay is what stage 2 samples anyway (``data.max_staleness``,
``frame_drop``).
"""

from __future__ import annotations

import dataclasses
import logging
import pathlib
import shutil
import threading
import time
from typing import Any, Sequence

import numpy as np

from arvla_base.config import require
from arvla_eval.records import EpisodeRecord

__all__ = ["BagTap", "CollectConfig", "CollectResult", "ScriptedExpertNode", "collect_ros"]

log = logging.getLogger(__name__)

RECORDED_TOPICS: dict[str, str] = {
    "/camera/image_raw": "sensor_msgs/msg/Image",
    "/joint_states": "sensor_msgs/msg/JointState",
    "/arvla/vl_prefix": "arvla_msgs/msg/VLPrefix",
    "/arm_controller/joint_trajectory": "trajectory_msgs/msg/JointTrajectory",
    "/arvla/instruction": "std_msgs/msg/String",
    "/arvla/demo_label": "trajectory_msgs/msg/JointTrajectory",
}
LABEL_TOPIC = "/arvla/demo_label"   # the demonstrator's clean command (DART: the robot got a
#                                     perturbed one); bag2episodes takes actions from it


@dataclasses.dataclass
class CollectConfig:
    """Demonstration collection through ROS (YAML section ``collect`` of config/demo.yaml)."""

    task: str = "pick_lift"
    seeds: list[int] = dataclasses.field(default_factory=lambda: list(range(10)))
    control_rate_hz: float = 20.0          # the scripted expert's tick = the learned expert's step
    max_seconds: float = 0.0               # sim seconds per episode; 0 = the task's own limit
    settle_s: float = 0.25                 # keep demonstrating "hold still" after success
    only_success: bool = True              # convert only successful demonstrations to episodes
    keep_bags: bool = True                 # False: delete each bag once converted
    prefixes: str = "live"                 # "live": PerceptionNode in the graph; "offline":
    #                                        encode the bag's camera frames after each episode
    noise_std: float = 0.0                 # DART: rad of smooth noise on executed arm commands
    noisy_fraction: float = 0.5            # share of episodes perturbed (the rest are clean)
    motion_profile: str = "trapezoid"      # the demonstrator's hand motion (arvla_sim.experts):
    #                                        "trapezoid", "min_jerk" (smoother demonstrations) or
    #                                        "min_jerk_replan" (min_jerk re-planned every step)
    grasp_retries: int = 0                 # tries after a missed grasp (pick_lift's demonstrator)
    speed_jitter: float = 0.0              # min_jerk: each waypoint's speed scaled by a factor in
    #                                        [1/(1+j), 1+j] drawn per episode seed, so a move's
    #                                        duration does not follow from its length (0: off)
    sim: dict[str, Any] = dataclasses.field(default_factory=dict)         # SimNode parameters
    perception: dict[str, Any] = dataclasses.field(default_factory=dict)  # PerceptionNode parameters

    def __post_init__(self) -> None:
        from arvla_sim.tasks import TASKS

        require(self.task in TASKS, "task", self.task, f"must be one of {sorted(TASKS)}")
        require(bool(self.seeds), "seeds", self.seeds, "must list at least one seed")
        require(self.control_rate_hz > 0, "control_rate_hz", self.control_rate_hz, "must be > 0")
        require(self.max_seconds >= 0, "max_seconds", self.max_seconds, "must be >= 0")
        require(self.settle_s >= 0, "settle_s", self.settle_s, "must be >= 0")
        require(0 <= self.noise_std <= 0.2, "noise_std", self.noise_std, "must be in [0, 0.2] rad")
        require(self.prefixes in ("live", "offline"), "prefixes", self.prefixes,
                "must be 'live' or 'offline'")
        require(0 <= self.noisy_fraction <= 1, "noisy_fraction", self.noisy_fraction,
                "must be in [0, 1]")
        from arvla_sim.experts import MOTION_PROFILES

        require(self.motion_profile in MOTION_PROFILES, "motion_profile", self.motion_profile,
                f"must be one of {list(MOTION_PROFILES)}")
        require(self.grasp_retries >= 0, "grasp_retries", self.grasp_retries, "must be >= 0")
        require(0 <= self.speed_jitter <= 1, "speed_jitter", self.speed_jitter, "must be in [0, 1]")
        require(self.speed_jitter == 0 or self.motion_profile == "min_jerk", "speed_jitter",
                self.speed_jitter, f"scales min_jerk's speeds; motion_profile is {self.motion_profile!r}")

    def cache_key_dict(self) -> dict[str, Any]:
        """The settings that make a collection (for cache keys). Settings added later are left
        out while at their default, so collections made before them stay valid."""
        from arvla_base.config import to_dict

        d = to_dict(self)
        for key in ("grasp_retries", "speed_jitter"):
            if d.get(key) == 0:
                del d[key]
        return d

    def noise_for(self, index: int) -> float:
        """DART noise of the ``index``-th episode: evenly interleaved noisy / clean episodes."""
        if self.noise_std <= 0 or self.noisy_fraction <= 0:
            return 0.0
        k = self.noisy_fraction
        return self.noise_std if int((index + 1) * k) > int(index * k) else 0.0


@dataclasses.dataclass
class CollectResult:
    bags: list[pathlib.Path]          # one per episode (deleted again when keep_bags is false)
    episodes: list[pathlib.Path]      # converted .npz training episodes
    records: list[EpisodeRecord]      # the scripted expert's episodes, as evaluation records


# ---------------------------------------------------------------------------------------------
# The demonstrator node


def _make_scripted_node_class() -> type:
    from arvla_msgs.msg import ExpertStatus
    from arvla_msgs.srv import ResetMemory
    from builtin_interfaces.msg import Duration
    from rclpy.node import Node
    from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
    from sensor_msgs.msg import JointState
    from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

    from arvla_base.rosutil import ns_to_stamp
    from arvla_sim.experts import DartNoise
    from arvla_sim.robot import JOINT_NAMES

    class ScriptedExpertNode(Node):
        """The scripted IK expert behind the expert's topics (see the module docstring).

        Idle until ``/arvla/reset_memory`` starts an episode (step 0 = the next tick); the
        privileged scene state comes from the sim node's ``demonstrator_view``.
        """

        def __init__(self, sim: Any, *, control_rate_hz: float = 20.0, motion_profile: str = "trapezoid",
                     grasp_retries: int = 0, speed_jitter: float = 0.0,
                     controller_name: str = "arm_controller", **kwargs: Any) -> None:
            super().__init__("arvla_scripted_expert", **kwargs)
            self.sim = sim
            # The sim's env runs at the controller rate (100 Hz); the expert moves its waypoints
            # per control tick, so it must know the tick is ours.
            self.expert = sim.scripted_expert(control_rate_hz, motion_profile, grasp_retries,
                                              speed_jitter)
            self.period_ns = int(round(1e9 / control_rate_hz))
            self._lock = threading.Lock()
            self._q: np.ndarray | None = None
            self._step: int | None = None      # None = idle
            reliable = QoSProfile(reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST,
                                  depth=10)
            self._traj_pub = self.create_publisher(JointTrajectory, f"/{controller_name}/joint_trajectory",
                                                   reliable)
            self._label_pub = self.create_publisher(JointTrajectory, LABEL_TOPIC, reliable)
            self.dart = DartNoise(0.0, dt=1.0 / control_rate_hz)
            self._status_pub = self.create_publisher(ExpertStatus, "/arvla/expert_status", reliable)
            self.create_subscription(JointState, "/joint_states", self._on_joints, qos_profile_sensor_data)
            self.create_service(ResetMemory, "/arvla/reset_memory", self._on_reset)
            self.create_timer(self.period_ns * 1e-9, self._on_tick)   # node clock: sim time

        def _on_joints(self, msg: JointState) -> None:
            index = {n: i for i, n in enumerate(msg.name)}
            if all(j in index for j in JOINT_NAMES):
                with self._lock:
                    self._q = np.asarray([msg.position[index[j]] for j in JOINT_NAMES], np.float32)

        def set_noise(self, std: float, seed: int) -> None:
            """DART perturbation of the next episode: ``std`` rad (0 = clean), its seed."""
            with self._lock:
                self.dart = DartNoise(std, dt=self.dart.dt)
                self.dart.reset(seed)

        def _on_reset(self, request: ResetMemory.Request, response: ResetMemory.Response) -> ResetMemory.Response:
            with self._lock:
                self._step, self._q = 0, None    # wait for a joint state of the new episode
            response.success, response.message = True, "scripted expert: new episode"
            return response

        def _on_tick(self) -> None:
            now_ns = self.get_clock().now().nanoseconds
            with self._lock:
                step, q = self._step, self._q
            if step is None or q is None or now_ns == 0:
                return
            start = time.perf_counter()
            sim_time, privileged = self.sim.demonstrator_view()
            obs = {"state": q, "step": step, "time": sim_time, "privileged": privileged}
            action = np.asarray(self.expert.act(obs), np.float64)
            with self._lock:
                executed = self.dart.perturb(action)
            latency = time.perf_counter() - start
            self._label_pub.publish(self._trajectory(action))      # the clean label
            self._traj_pub.publish(self._trajectory(executed))     # what the robot executes
            self._publish_status(now_ns, step, latency)
            with self._lock:
                if self._step == step:
                    self._step = step + 1

        def _trajectory(self, positions: np.ndarray) -> JointTrajectory:
            """One point, one period ahead; stamp 0: the controller starts it on arrival."""
            traj = JointTrajectory()
            traj.joint_names = list(JOINT_NAMES)
            point = JointTrajectoryPoint()
            point.positions = positions.tolist()
            point.time_from_start = ns_to_stamp(self.period_ns, Duration())
            traj.points = [point]
            return traj

        def _publish_status(self, now_ns: int, step: int, latency: float) -> None:
            """RUNNING at ``step``, no prefix (staleness -1): what the rollout monitor reads."""
            status = ExpertStatus()
            ns_to_stamp(now_ns, status.header.stamp)
            status.state, status.step = ExpertStatus.STATE_RUNNING, step
            status.staleness_steps, status.staleness_sec = -1, -1.0
            status.step_latency_sec = latency
            self._status_pub.publish(status)

    return ScriptedExpertNode


def ScriptedExpertNode(sim: Any, **kwargs: Any) -> Any:  # noqa: N802 - a class, built lazily (rclpy)
    """Build a ``ScriptedExpertNode`` (the class is created on first use so this module imports
    without rclpy)."""
    global _SCRIPTED_CLASS
    if _SCRIPTED_CLASS is None:
        _SCRIPTED_CLASS = _make_scripted_node_class()
    return _SCRIPTED_CLASS(sim, **kwargs)


_SCRIPTED_CLASS: type | None = None


# ---------------------------------------------------------------------------------------------
# Bag recording, one bag per episode


class BagTap:
    """Raw subscriptions to ``RECORDED_TOPICS`` whose messages go to the bag currently open.

    ``open(path)`` starts a bag that takes nothing until ``start_at(t_ns)``; from then on a
    message is written if its receive time (sim clock) is at or after ``t_ns`` -- and, for
    joint states, if its header stamp is too, because ``bag2episodes`` builds its time grid on
    them. The instruction is latched and published once per reset: the newest one is kept and
    written at ``start_at``.
    """

    def __init__(self, context: Any) -> None:
        from rclpy.node import Node
        from rclpy.parameter import Parameter
        from rclpy.qos import (DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy,
                               qos_profile_sensor_data)

        from arvla_data.bag import make_typestore
        from arvla_data.record import _message_class

        self.node = Node("arvla_bag_tap", context=context,
                         parameter_overrides=[Parameter("use_sim_time", value=True)])
        self.typestore = make_typestore()
        self._lock = threading.Lock()
        self._bag: Any = None
        self._start_ns: int | None = None
        self._instruction: bytes | None = None
        self._joint_state_cls = _message_class("sensor_msgs/msg/JointState")
        reliable = QoSProfile(reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST, depth=100)
        latched = QoSProfile(reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST, depth=1,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        for topic, msgtype in RECORDED_TOPICS.items():
            qos = (qos_profile_sensor_data if msgtype.startswith("sensor_msgs")
                   else latched if topic == "/arvla/instruction" else reliable)
            self.node.create_subscription(_message_class(msgtype), topic,
                                          lambda raw, topic=topic: self._on_message(topic, raw),
                                          qos, raw=True)

    def open(self, path: pathlib.Path) -> None:
        from arvla_data.bag import BagRecorder

        bag = BagRecorder(path, typestore=self.typestore).open()
        for topic, msgtype in RECORDED_TOPICS.items():
            bag.add_topic(topic, msgtype)
        with self._lock:
            self._bag, self._start_ns = bag, None

    def start_at(self, start_ns: int) -> None:
        with self._lock:
            self._start_ns = start_ns
            if self._bag is not None and self._instruction is not None:
                self._bag.write_raw("/arvla/instruction", start_ns, self._instruction)

    def close(self) -> dict[str, int]:
        with self._lock:
            bag, self._bag = self._bag, None
        if bag is None:
            return {}
        bag.close()
        return bag.counts

    def _on_message(self, topic: str, raw: bytes) -> None:
        now_ns = self.node.get_clock().now().nanoseconds
        if topic == "/arvla/instruction":
            with self._lock:
                self._instruction = bytes(raw)
                if self._bag is None or self._start_ns is None:
                    return
        if topic == "/joint_states":
            from rclpy.serialization import deserialize_message

            from arvla_base.rosutil import stamp_to_ns

            stamp = deserialize_message(raw, self._joint_state_cls).header.stamp
            now_ns = min(now_ns, stamp_to_ns(stamp))
        with self._lock:
            if self._bag is None or self._start_ns is None or now_ns < self._start_ns:
                return
            self._bag.write_raw(topic, max(now_ns, self._start_ns), raw)


# ---------------------------------------------------------------------------------------------
# Collection


def collect_ros(config: CollectConfig, out_dir: str | pathlib.Path, *, progress: bool = True,
                domain_id: int | None = None, log_level: str | None = None) -> CollectResult:
    """Collect ``config.seeds`` demonstrations of ``config.task`` into ``out_dir``:
    ``bags/<task>_<seed>/`` (MCAP) and ``episodes/<task>_<seed>.npz``."""
    from tqdm import tqdm

    from arvla_base.episode import EpisodeError, save_episode
    from arvla_data.episodes import BagEpisodeConfig, bag_to_episode
    from arvla_data.prefixes import OfflinePrefixes
    from arvla_eval.rollout import RolloutGraph, _parameters
    from arvla_sim.robot import JOINT_NAMES
    from arvla_sim.tasks import make_task

    out = pathlib.Path(out_dir)
    bag_dir, ep_dir = out / "bags", out / "episodes"
    bag_dir.mkdir(parents=True, exist_ok=True)
    ep_dir.mkdir(parents=True, exist_ok=True)
    max_seconds = config.max_seconds or make_task(config.task).max_duration_s
    rate = config.control_rate_hz

    def factory(context: Any, graph: RolloutGraph) -> Any:
        return ScriptedExpertNode(graph.sim, control_rate_hz=rate, motion_profile=config.motion_profile,
                                  grasp_retries=config.grasp_retries, speed_jitter=config.speed_jitter,
                                  controller_name=graph.sim.config.controller_name, context=context,
                                  parameter_overrides=_parameters({"use_sim_time": True}))

    # actions = the demonstrator's clean commands (equal to the executed ones without noise)
    offline = config.prefixes == "offline"
    bag_cfg = BagEpisodeConfig(control_rate_hz=rate, joint_names=list(JOINT_NAMES),
                               command_topic=LABEL_TOPIC, prefix_topic="" if offline else
                               "/arvla/vl_prefix", keep_images=offline)
    encoder = OfflinePrefixes(config.perception, make_task(config.task).instruction) if offline \
        else None
    result = CollectResult([], [], [])

    def convert(bag: pathlib.Path, name: str) -> pathlib.Path | None:
        try:
            episode = bag_to_episode(bag, bag_cfg)
            if encoder is not None:
                encoder.fill(episode)
            episode["task"] = np.asarray(config.task)
            return save_episode(ep_dir / f"{name}.npz", episode)
        except EpisodeError as err:
            log.warning("episode %s not usable: %s", name, err)
            return None
        finally:
            if not config.keep_bags:
                shutil.rmtree(bag, ignore_errors=True)

    from concurrent.futures import Future, ThreadPoolExecutor

    worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="arvla_bag2episode")
    pending: list[Future] = []
    with RolloutGraph(task=config.task, expert_factory=factory, sim_overrides=config.sim,
                      perception_overrides=config.perception, with_perception=not offline,
                      domain_id=domain_id, log_level=log_level) as graph:
        tap = BagTap(graph.context)
        graph.add_node(tap.node)
        try:
            bar = tqdm(config.seeds, desc=f"collect {config.task}", unit="ep", disable=not progress)
            wins = 0
            for index, seed in enumerate(bar):
                name = f"{config.task}_{seed:06d}"
                graph.expert.set_noise(config.noise_for(index), seed)
                bag = bag_dir / name
                if bag.exists():
                    shutil.rmtree(bag)
                try:
                    rec = graph.run_episode(seed, max_seconds=max_seconds, policy_name="scripted",
                                            control_rate_hz=rate, settle_s=config.settle_s,
                                            before_reset=lambda bag=bag: tap.open(bag),
                                            after_reset=tap.start_at)
                finally:
                    counts = tap.close()
                result.records.append(rec)
                result.bags.append(bag)
                wins += rec.success
                bar.set_postfix(success=f"{wins}/{len(result.records)}",
                                frames=counts.get("/camera/image_raw", 0),
                                prefixes=counts.get("/arvla/vl_prefix", 0))
                if rec.success or not config.only_success:
                    # converted (and encoded) in a worker thread while the next episode runs
                    pending.append(worker.submit(convert, bag, name))
                elif not config.keep_bags:
                    shutil.rmtree(bag, ignore_errors=True)
        finally:
            tap.close()
            worker.shutdown(wait=True)
    result.episodes = [p for p in (f.result() for f in pending) if p is not None]
    return result


def episode_shapes(paths: Sequence[pathlib.Path]) -> dict[str, Any]:
    """Summary of converted episodes (count, steps, frames) for logs."""
    from arvla_base.episode import load_episode

    steps, frames = [], []
    for p in paths:
        ep = load_episode(p)
        steps.append(len(ep["states"]))
        frames.append(len(ep["frame_steps"]))
    return {"episodes": len(paths), "steps": int(np.sum(steps)) if steps else 0,
            "frames": int(np.sum(frames)) if frames else 0}
