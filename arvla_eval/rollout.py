"""Closed-loop episodes through the real ROS graph, in one process.

``run_episodes(policy, task=..., seeds=...)`` starts, on a private rclpy ``Context`` with one
executor thread for the sim and one for everything else:

- ``SimNode`` (the MuJoCo Panda behind a joint_trajectory_controller-like topic, ``/clock``),
- ``PerceptionNode`` (camera + instruction -> ``VLPrefix``, sim time),
- ``ActionExpertNode`` running the given policy object (sim time),
- an ``EpisodeMonitor`` node of our own that only LISTENS: ``/joint_states``, the controller's
  ``JointTrajectory``, ``/arvla/expert_status``, ``/sim/success``, ``/clock`` and (optionally)
  the camera,

and drives each episode with the same services a user would call: the sim's ``seed``
parameter + ``/sim/reset``, then ``/arvla/reset_memory`` (memory and prefix cleared). An episode
ends on success (``/sim/success``), on the task's failure, or after ``max_seconds`` of sim time.
Failure has no topic, so it is read from the in-process sim's task -- evaluation bookkeeping
only; the policy never sees it.

Nodes are created once and reused across episodes (loading the perception backbone takes
seconds); ``RolloutGraph`` exposes that for callers running several tasks or policies
(``set_task`` switches the sim node's task in place).

Ticks: each ``ExpertStatus`` is one control tick of the expert (its header stamp is the tick's
sim time). The record's tick t holds that status's staleness/latency, the newest joint state
stamped at or before the tick, and the first point of the trajectory published in that tick
(statuses and trajectories are paired in arrival order; a tick that published nothing repeats
the previous command -- the controller holds it -- or, before any command, the measured
position). The record also keeps every /joint_states sample of the episode at its own stamp
(``joint_times`` / ``joint_positions``): smoothness is measured on those, not on the tick
samples, whose age varies by up to a joint-state period with the ticks' timing.

Lock-step (``sim_overrides={"lockstep": True, ...}``, see ``arvla_sim/node.py``): the sim
advances one expert period per handshake, so an episode no longer depends on machine load. The
graph then holds the sim at a boundary across its resets (the expert's memory reset and enable
land before the episode's first clock, so step 0 is always the episode's first instant) and
lets the sim itself stop the episode at the first tick at or after ``max_seconds`` (or success
+ ``settle_s``, or failure), instead of polling the wall clock; the record's success time is
the sim's first successful controller tick. Defaults it fills in when the caller did not:
``joint_states_rate_hz`` = ``lockstep_control_rate_hz`` (one joint state per handshake),
``lockstep_prefix_topic: ""`` without a perception node, perception ``max_rate_hz: 0``.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any, Callable, Mapping, NamedTuple, Sequence

import numpy as np

from arvla_base.rosutil import stamp_to_ns
from arvla_eval.records import EpisodeRecord

__all__ = ["EpisodeMonitor", "RolloutError", "RolloutGraph", "ar_expert_factory", "default_domain_id",
           "expert_parameters", "run_episodes"]

log = logging.getLogger(__name__)



class RolloutError(RuntimeError):
    """The graph could not be started or an episode could not be run; the message says why."""


def _always() -> bool:
    return True


_FROM_TOPIC: Any = object()   # EpisodeMonitor.end: success time as /sim/success reported it


def expert_parameters(joint_names: Sequence[str], lower: Sequence[float], upper: Sequence[float],
                      overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Expert node parameters for the embedded Panda (8 joints incl. the gripper), sim time."""
    from arvla_sim.robot import MAX_VELOCITY

    params: dict[str, Any] = {
        "use_sim_time": True,
        "joints": list(joint_names),
        "position_min": [float(x) for x in lower],
        "position_max": [float(x) for x in upper],
        "max_velocity": [float(x) for x in MAX_VELOCITY[:len(joint_names)]],
        "torch_threads": 1,
        "diagnostics_period": 5.0,
    }
    params.update(overrides or {})
    return params


def _parameters(values: Mapping[str, Any]) -> list[Any]:
    from rclpy.parameter import Parameter

    return [Parameter(k, value=v) for k, v in values.items()]


# ---------------------------------------------------------------------------------------------
# The listening node

class _Command(NamedTuple):
    """A command as received: the first point's positions and the time it targets (ns; None
    when the trajectory was stamped 0, i.e. to start on arrival)."""

    positions: np.ndarray
    target_ns: int | None


class _Tick(NamedTuple):
    """One expert tick of the episode, from its ExpertStatus (+ the command it sent)."""

    stamp_ns: int
    staleness: int
    latency_s: float
    command: _Command | None


class EpisodeMonitor:
    """Collects what one episode needs from the graph's topics (a plain object owning a Node).

    Everything arrives on executor threads; one lock guards the buffers. ``begin()`` arms it
    after the resets: statuses count from the first tick with ``step == 0`` stamped after the
    reset (ticks of the previous episode still in flight are ignored).
    """

    def __init__(self, context: Any, *, controller_name: str = "arm_controller",
                 joint_names: Sequence[str], image_topic: str = "/camera/image_raw",
                 keep_frames: bool = False, frame_every: int = 1) -> None:
        from arvla_msgs.msg import ExpertStatus
        from rclpy.node import Node
        from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
        from rosgraph_msgs.msg import Clock
        from sensor_msgs.msg import Image, JointState
        from std_msgs.msg import Bool
        from trajectory_msgs.msg import JointTrajectory

        self.node = Node("arvla_episode_monitor", context=context)
        self.joint_names = list(joint_names)
        self.keep_frames = keep_frames
        self.frame_every = max(1, int(frame_every))
        self._lock = threading.Lock()
        self._recording = False
        self.clock_ns = 0
        reliable = QoSProfile(reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST,
                              depth=100)
        n = self.node
        n.create_subscription(Clock, "/clock", self._on_clock, 10)
        n.create_subscription(JointState, "/joint_states", self._on_joints, qos_profile_sensor_data)
        n.create_subscription(JointTrajectory, f"/{controller_name}/joint_trajectory", self._on_traj, reliable)
        n.create_subscription(ExpertStatus, "/arvla/expert_status", self._on_status, reliable)
        n.create_subscription(Bool, "/sim/success", self._on_success, 10)
        if keep_frames:
            n.create_subscription(Image, image_topic, self._on_image, qos_profile_sensor_data)
        self._reset_buffers(0)

    def _reset_buffers(self, after_ns: int | None) -> None:
        self._after_ns = after_ns        # None: episode start not known yet, buffer everything
        self._early: list[tuple[int, int, int, float, _Command | None]] = []
        self._started = False
        self.t0_ns: int | None = None
        self.ticks: list[_Tick] = []
        self._pending_cmd: _Command | None = None
        self.joint_t: list[int] = []
        self.joint_q: list[np.ndarray] = []
        self.success_ns: int | None = None
        self.frames: list[np.ndarray] = []
        self._n_images = 0

    # -- callbacks (executor threads) --------------------------------------------------------
    def _on_clock(self, msg: Any) -> None:
        self.clock_ns = stamp_to_ns(msg.clock)

    def _on_joints(self, msg: Any) -> None:
        stamp = stamp_to_ns(msg.header.stamp)
        index = {name: i for i, name in enumerate(msg.name)}
        if any(j not in index for j in self.joint_names):
            return
        q = np.asarray([msg.position[index[j]] for j in self.joint_names], np.float64)
        with self._lock:
            if self._recording and (self._after_ns is None or stamp >= self._after_ns):
                self.joint_t.append(stamp)
                self.joint_q.append(q)

    def _on_traj(self, msg: Any) -> None:
        if not msg.points:
            return
        index = {name: i for i, name in enumerate(msg.joint_names)}
        if any(j not in index for j in self.joint_names):
            return
        point = msg.points[0]
        cmd = np.asarray([point.positions[index[j]] for j in self.joint_names], np.float64)
        stamp = stamp_to_ns(msg.header.stamp)
        offset = stamp_to_ns(point.time_from_start)
        with self._lock:  # the time the point targets; stamp 0 (start on arrival): not known
            self._pending_cmd = _Command(cmd, stamp + offset if stamp > 0 else None)

    def _on_status(self, msg: Any) -> None:
        stamp = stamp_to_ns(msg.header.stamp)
        tick = (stamp, int(msg.step), int(msg.staleness_steps), float(msg.step_latency_sec))
        with self._lock:
            cmd, self._pending_cmd = self._pending_cmd, None
            if not self._recording:
                return
            if self._after_ns is None:     # the resets are still in flight: decide later
                self._early.append((*tick, cmd))
                return
            self._accept(*tick, cmd)

    def _accept(self, stamp: int, step: int, stale: int, latency: float, cmd: _Command | None) -> None:
        """A status of the current episode? Ticks count from the expert's first one after the
        memory reset (step 0) stamped at or after the episode start. Caller holds the lock."""
        assert self._after_ns is not None
        if stamp < self._after_ns:
            return
        if not self._started:
            if step != 0:
                return
            self._started, self.t0_ns = True, stamp
        self.ticks.append(_Tick(stamp, stale, latency, cmd))

    def _on_success(self, msg: Any) -> None:
        with self._lock:
            if self._recording and self._started and msg.data and self.success_ns is None:
                self.success_ns = max(self.clock_ns, self.ticks[-1].stamp_ns if self.ticks else 0)

    def _on_image(self, msg: Any) -> None:
        from arvla_data.episodes import image_to_rgb

        with self._lock:
            if not (self._recording and self._started):
                return
            self._n_images += 1
            if (self._n_images - 1) % self.frame_every:
                return
        rgb = image_to_rgb(msg)
        with self._lock:
            self.frames.append(rgb)

    # -- episode control (main thread) -------------------------------------------------------
    def begin(self) -> None:
        """Start buffering (call before the resets)."""
        with self._lock:
            self._reset_buffers(None)
            self._recording = True

    def set_start(self, after_ns: int) -> None:
        """The episode began at sim time ``after_ns``: drop what came before, replay the rest
        (the expert may tick before this call returns; its step-0 status must not be lost)."""
        with self._lock:
            self._after_ns = after_ns
            keep = [i for i, t in enumerate(self.joint_t) if t >= after_ns]
            self.joint_t = [self.joint_t[i] for i in keep]
            self.joint_q = [self.joint_q[i] for i in keep]
            early, self._early = self._early, []
            for item in early:
                self._accept(*item)

    def elapsed_s(self) -> float:
        """Sim time of the newest recorded expert tick since the first (not the sim clock: the
        episode must hold ticks up to ``max_seconds`` even when statuses arrive late)."""
        with self._lock:
            if self.t0_ns is None or not self.ticks:
                return 0.0
            return (self.ticks[-1].stamp_ns - self.t0_ns) * 1e-9

    @property
    def started(self) -> bool:
        return self._started

    def wait_for_tick(self, stamp_ns: int, timeout_s: float) -> bool:
        """Wait (wall time) until the expert's status stamped ``stamp_ns`` (or later) is recorded."""
        deadline = time.monotonic() + timeout_s
        while True:
            with self._lock:
                if self.ticks and self.ticks[-1].stamp_ns >= stamp_ns:
                    return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.002)

    def end(self, *, policy: str, task: str, seed: int, control_rate_hz: float,
            failed: bool, success_ns: Any = _FROM_TOPIC) -> EpisodeRecord:
        """Stop recording; the episode's record (ticks up to the success tick). ``success_ns``:
        the success time (sim ns, None = no success) when the caller knows it better than
        /sim/success's arrival (lock-step)."""
        with self._lock:
            self._recording = False
            ticks = list(self.ticks)
            jt = np.asarray(self.joint_t, np.int64)
            jq = np.asarray(self.joint_q, np.float64).reshape(-1, len(self.joint_names))
            if success_ns is _FROM_TOPIC:
                success_ns = self.success_ns
            t0 = self.t0_ns
            frames = list(self.frames)
        if not ticks or t0 is None:
            raise RolloutError(f"task {task} seed {seed}: no expert tick was recorded (is the expert "
                               "node running and /clock advancing?)")
        if success_ns is not None:      # the success tick is the last one that counts
            ticks = [t for t in ticks if t.stamp_ns <= success_ns] or ticks[:1]
        if jt.size == 0:
            raise RolloutError(f"task {task} seed {seed}: no /joint_states during the episode")
        order = np.argsort(jt, kind="stable")
        jt, jq = jt[order], jq[order]
        stamps = np.asarray([t.stamp_ns for t in ticks], np.int64)
        idx = np.clip(np.searchsorted(jt, stamps, side="right") - 1, 0, len(jt) - 1)
        positions = jq[idx]
        # the raw samples of the episode, at their stamps (smoothness is measured on these):
        # from the one tick 0 read through the last tick that counts
        window = slice(int(idx[0]), int(np.searchsorted(jt, stamps[-1], side="right")))
        commands, command_ns = _commands_in_effect(ticks, positions, int(round(1e9 / control_rate_hz)))
        success = success_ns is not None and not failed
        return EpisodeRecord(
            policy=policy, task=task, seed=seed, success=success,
            time_to_success=(success_ns - t0) * 1e-9 if success else None,
            control_rate_hz=control_rate_hz, joint_names=self.joint_names,
            times=(stamps - t0) * 1e-9, positions=positions, commands=commands,
            staleness_steps=np.asarray([t.staleness for t in ticks], np.int64),
            step_latency_s=np.asarray([t.latency_s for t in ticks], np.float64),
            frames=np.stack(frames) if (self.keep_frames and frames) else None,
            joint_times=(jt[window] - t0) * 1e-9, joint_positions=jq[window],
            command_times=(command_ns - t0) * 1e-9)


def _commands_in_effect(ticks: Sequence[_Tick], positions: np.ndarray,
                        period_ns: int) -> tuple[np.ndarray, np.ndarray]:
    """The command in effect at each tick and the time it targets (ns). A tick without a command
    keeps the last one (same target time); before any, the measured position one period on. A
    command's target time is its own (stamp + time_from_start), else (sent with stamp 0, started
    on arrival) the tick's + one period."""
    commands = np.empty_like(positions)
    command_ns = np.empty(len(ticks), np.int64)
    last: np.ndarray | None = None
    last_ns = 0
    for i, tick in enumerate(ticks):
        if tick.command is not None:
            last = tick.command.positions
            target = tick.command.target_ns
            last_ns = target if target is not None else tick.stamp_ns + period_ns
        commands[i] = last if last is not None else positions[i]
        command_ns[i] = last_ns if last is not None else tick.stamp_ns + period_ns
    return commands, command_ns


# ---------------------------------------------------------------------------------------------
# The graph


class RolloutGraph:
    """Sim + perception + an expert (or any node publishing trajectories and ExpertStatus) and a
    monitor on a private context, spun in two background threads (sim | the rest).

    ``expert_factory(context) -> Node`` builds the expert node; it must offer ``/arvla/reset_memory``
    and publish ``/arvla/expert_status`` every tick (the ActionExpertNode does; so does
    ``collect_ros.ScriptedExpertNode``). Use as a context manager.
    """

    def __init__(self, *, task: str, expert_factory: Callable[[Any, Any], Any],
                 sim_overrides: Mapping[str, Any] | None = None,
                 perception_overrides: Mapping[str, Any] | None = None,
                 with_perception: bool = True, keep_frames: bool = False, frame_every: int = 1,
                 domain_id: int | None = None, log_level: str | None = None) -> None:
        self.task = task
        self._expert_factory = expert_factory
        self.sim_overrides = dict(sim_overrides or {})
        self.perception_overrides = dict(perception_overrides or {})
        self.lockstep = bool(self.sim_overrides.get("lockstep", False))
        if self.lockstep:   # the lock-step defaults (module docstring)
            self.sim_overrides.setdefault("joint_states_rate_hz",
                                          float(self.sim_overrides.get("lockstep_control_rate_hz", 20.0)))
            if not with_perception:
                self.sim_overrides.setdefault("lockstep_prefix_topic", "")
            self.perception_overrides.setdefault("max_rate_hz", 0.0)
        self.with_perception = with_perception
        self.keep_frames = keep_frames
        self.frame_every = frame_every
        self.domain_id = domain_id
        self.log_level = log_level        # e.g. "warn": quieter nodes (per-episode resets log at info)
        self.context: Any = None
        self.executor: Any = None        # perception, expert, monitor, extra nodes
        self.sim_executor: Any = None    # the sim alone: rendering never delays an expert tick
        self.sim: Any = None
        self.perception: Any = None
        self.expert: Any = None
        self.monitor: EpisodeMonitor | None = None
        self._threads: list[threading.Thread] = []
        self._sim_thread: threading.Thread | None = None
        self._clients: dict[str, Any] = {}
        self._extra_nodes: list[Any] = []

    # -- lifecycle ------------------------------------------------------------------------------
    def __enter__(self) -> "RolloutGraph":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        import rclpy
        from rclpy.executors import SingleThreadedExecutor

        self.context = rclpy.Context()
        kwargs: dict[str, Any] = {"domain_id": self.domain_id} if self.domain_id is not None else {}
        if self.log_level:
            kwargs["args"] = ["--ros-args", "--log-level", self.log_level]
        rclpy.init(context=self.context, **kwargs)
        try:
            # Two single-threaded executors in two threads, not one MultiThreadedExecutor: with
            # rclpy's thread pool, ready timers are re-dispatched while their callback still runs
            # and the busy spinning starved the sim here (it ran at 0.07x real time).
            self.executor = SingleThreadedExecutor(context=self.context)
            self.sim_executor = SingleThreadedExecutor(context=self.context)
            self._start_sim()
            from arvla_sim.robot import JOINT_NAMES

            if self.with_perception:
                from arvla_perception.node import PerceptionNode

                self.perception = PerceptionNode(context=self.context, parameter_overrides=_parameters(
                    {"use_sim_time": True, **self.perception_overrides}))
                self.executor.add_node(self.perception)
            self.expert = self._expert_factory(self.context, self)
            self.executor.add_node(self.expert)
            if self.lockstep:
                self._check_lockstep_rate()
            self.monitor = EpisodeMonitor(self.context, joint_names=JOINT_NAMES,
                                          controller_name=self.sim.config.controller_name,
                                          image_topic=self.sim.config.image_topic,
                                          keep_frames=self.keep_frames, frame_every=self.frame_every)
            self.executor.add_node(self.monitor.node)
            from arvla_msgs.srv import ResetMemory
            from std_srvs.srv import Trigger

            mon = self.monitor.node
            self._clients = {"reset_sim": mon.create_client(Trigger, self.sim.config.reset_service),
                             "reset_memory": mon.create_client(ResetMemory, "/arvla/reset_memory")}
            self._sim_thread = self._start_thread("sim", self.sim_executor)
            self._start_thread("nodes", self.executor)
            for name, client in self._clients.items():
                if not client.wait_for_service(timeout_sec=30.0):
                    raise RolloutError(f"service of {name} ({client.srv_name}) not available after 30 s")
            from std_srvs.srv import SetBool

            enable = mon.create_client(SetBool, "/arvla/enable")  # the expert node's; not a scripted one's
            if enable.wait_for_service(timeout_sec=2.0):
                self._clients["enable"] = enable
        except BaseException:
            self.close()
            raise

    def _start_thread(self, name: str, executor: Any) -> threading.Thread:
        thread = threading.Thread(target=self._spin, args=(executor,), name=f"arvla_rollout_{name}",
                                  daemon=True)
        thread.start()
        self._threads.append(thread)
        return thread

    @staticmethod
    def _spin(executor: Any) -> None:
        from rclpy.executors import ExternalShutdownException

        try:
            executor.spin()
        except ExternalShutdownException:
            pass

    def _start_sim(self) -> None:
        from arvla_sim.node import SimNode

        params = {"task": self.task, **self.sim_overrides}
        self.sim = SimNode(context=self.context, parameter_overrides=_parameters(params))
        if self.lockstep:
            self.sim.set_lockstep_stop(_always)   # nothing moves before the first episode's resets
        self.sim_executor.add_node(self.sim)

    def _check_lockstep_rate(self) -> None:
        """The sim's handshake period must be the expert's tick period (else every other
        handshake waits for a tick that never comes)."""
        expert = self.expert
        rate = getattr(getattr(expert, "config", None), "control_rate", None)
        if rate is None and getattr(expert, "period_ns", None):
            rate = 1e9 / expert.period_ns
        sim_rate = self.sim.config.lockstep_control_rate_hz
        if rate is not None and abs(float(rate) - sim_rate) > 1e-6 * sim_rate:
            raise RolloutError(f"lock-step: the sim's lockstep_control_rate_hz {sim_rate:g} Hz is not the "
                               f"expert's control rate {float(rate):g} Hz; pass lockstep_control_rate_hz "
                               f"{float(rate):g} in sim_overrides")

    def _hold_sim(self) -> None:
        """Lock-step: stop the sim at a boundary (its handshake there complete) and wait for it."""
        self.sim.set_lockstep_stop(_always)
        timeout_s = 2.0 * self.sim.config.lockstep_timeout_s + 10.0
        if not self.sim.lockstep_held.wait(timeout_s):
            raise RolloutError(f"task {self.task}: the lock-step sim did not stop at a boundary within "
                               f"{timeout_s:.0f} s wall time")

    def add_node(self, node: Any) -> None:
        """Spin another node with the graph; it is destroyed by ``close`` after the executor
        stopped (destroying a node while the executor spins fails its in-flight callbacks)."""
        self.executor.add_node(node)
        self._extra_nodes.append(node)

    def set_task(self, task: str) -> None:
        """Switch the sim to ``task`` (perception and expert are kept). The sim node stays: its
        ``task`` parameter is set with its executor stopped, so no callback runs on the old
        task's world. (Replacing the node gave it fresh DDS readers, and in lock-step the
        expert's first ~10 statuses to them arrived ~100 s late, one handshake time-out each.)"""
        if task == self.task:
            return
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.parameter import Parameter

        assert self._sim_thread is not None, "set_task before start()"
        self.sim_executor.remove_node(self.sim)
        self.sim_executor.shutdown(timeout_sec=5.0)
        self._sim_thread.join(timeout=5.0)
        result = self.sim.set_parameters([Parameter("task", value=task)])[0]
        if not result.successful:
            raise RolloutError(f"cannot switch the sim to task {task!r}: {result.reason}")
        self.task = task
        if self.lockstep:
            self.sim.set_lockstep_stop(_always)   # held until the next episode's resets
        self.sim_executor = SingleThreadedExecutor(context=self.context)
        self.sim_executor.add_node(self.sim)
        self._sim_thread = self._start_thread("sim", self.sim_executor)

    @property
    def joint_limits(self) -> tuple[np.ndarray, np.ndarray]:
        return self.sim.joint_limits()

    def close(self) -> None:
        import rclpy

        for ex in (self.executor, self.sim_executor):
            if ex is not None:
                ex.shutdown(timeout_sec=5.0)
        for thread in self._threads:
            thread.join(timeout=5.0)
        for node in (*self._extra_nodes, self.monitor.node if self.monitor else None, self.expert,
                     self.perception, self.sim):
            if node is not None:
                try:
                    node.destroy_node()
                except Exception as err:  # noqa: BLE001 - keep closing the others
                    log.warning("destroying %s failed: %s", node, err)
        if self.context is not None and self.context.ok():
            rclpy.shutdown(context=self.context)
        self.executor = self.sim_executor = self.context = None

    # -- services -------------------------------------------------------------------------------
    def _call(self, name: str, request: Any, timeout_s: float = 10.0) -> Any:
        client = self._clients[name]
        future = client.call_async(request)
        deadline = time.monotonic() + timeout_s
        while not future.done():
            if time.monotonic() > deadline:
                client.remove_pending_request(future)
                raise RolloutError(f"{client.srv_name}: no answer within {timeout_s:g} s")
            time.sleep(0.002)
        return future.result()

    def reset(self, seed: int, before_reset: Callable[[], None] | None = None) -> int:
        """New episode with ``seed`` (sim reset, then expert memory reset); returns the sim time
        (ns) at which the episode started. ``before_reset`` runs right before the sim reset."""
        from arvla_msgs.srv import ResetMemory
        from rclpy.parameter import Parameter
        from std_srvs.srv import Trigger

        if self.lockstep:
            # Held from here until run_episode lets it go: the resets below all land before the
            # episode's first clock message, whatever the load.
            self._hold_sim()
        result = self.sim.set_parameters([Parameter("seed", value=int(seed))])[0]
        if not result.successful:
            raise RolloutError(f"cannot set the sim seed to {seed}: {result.reason}")
        gated = "enable" in self._clients
        if gated:
            # The expert stops publishing before the arm is put back: otherwise, between the sim
            # reset and its memory reset, it acts on the new posture with the last episode's
            # memory and the controller starts the episode moving (seen as a jerk spike at 0 s).
            from std_srvs.srv import SetBool

            self._call("enable", SetBool.Request(data=False))
            if not self.lockstep:  # (lock-step: the sim already has the last tick's trajectory)
                time.sleep(0.05)  # a trajectory published just before is delivered (and replaced by the reset)
        if before_reset is not None:
            before_reset()
        answer = self._call("reset_sim", Trigger.Request())
        if not answer.success:
            raise RolloutError(f"/sim/reset failed: {answer.message}")
        # Physics time of the new episode first, the clock second: a tick in between makes the
        # estimate later (one tick of the new episode ignored), never earlier (old ticks kept).
        episode_ns = self.sim.episode_time_ns()
        start_ns = self.sim.now_ns - episode_ns
        answer = self._call("reset_memory", ResetMemory.Request(clear_prefix=True))
        if not answer.success:
            raise RolloutError(f"/arvla/reset_memory failed: {answer.message}")
        if gated:
            from std_srvs.srv import SetBool

            self._call("enable", SetBool.Request(data=True))
        return start_ns

    # -- episodes -------------------------------------------------------------------------------
    def run_episode(self, seed: int, *, max_seconds: float, policy_name: str,
                    control_rate_hz: float, wall_timeout_s: float | None = None,
                    settle_s: float = 0.0, before_reset: Callable[[], None] | None = None,
                    after_reset: Callable[[int], None] | None = None) -> EpisodeRecord:
        """One episode (reset, run until success / failure / ``max_seconds`` sim time).

        ``settle_s``: keep running this long (sim time) after success before ending (e.g. so a
        demonstration also shows "done, hold still"); the record still ends at the success tick.
        ``before_reset()`` / ``after_reset(start_ns)`` bracket the resets (bag recording).
        Lock-step: the sim stops the episode itself, at the first tick at or after
        ``max_seconds`` / success + ``settle_s`` / failure (module docstring).
        """
        assert self.monitor is not None
        self.monitor.begin()
        after_ns = self.reset(seed, before_reset)
        self.monitor.set_start(after_ns)
        if after_reset is not None:
            after_reset(after_ns)
        if self.lockstep:
            return self._run_lockstep(seed, after_ns, max_seconds=max_seconds, policy_name=policy_name,
                                      control_rate_hz=control_rate_hz, wall_timeout_s=wall_timeout_s,
                                      settle_s=settle_s)
        rtf = float(self.sim.config.real_time_factor) or 10.0
        wall_timeout_s = wall_timeout_s or (max_seconds / rtf) * 4.0 + 30.0
        deadline = time.monotonic() + wall_timeout_s
        failed = False
        while True:
            time.sleep(0.01)
            success_ns = self.monitor.success_ns
            if success_ns is not None and self.monitor.clock_ns - success_ns >= settle_s * 1e9:
                break
            if self.monitor.started and self.sim.failure():
                failed = True
                break
            if self.monitor.elapsed_s() >= max_seconds:
                break
            if time.monotonic() > deadline:
                if not self.monitor.started:
                    raise RolloutError(f"task {self.task} seed {seed}: the expert never ticked within "
                                       f"{wall_timeout_s:.0f} s wall time")
                log.warning("task %s seed %d: wall-clock guard hit after %.1f s sim time",
                            self.task, seed, self.monitor.elapsed_s())
                break
        return self.monitor.end(policy=policy_name, task=self.task, seed=seed,
                                control_rate_hz=control_rate_hz, failed=failed)

    def _run_lockstep(self, seed: int, start_ns: int, *, max_seconds: float, policy_name: str,
                      control_rate_hz: float, wall_timeout_s: float | None, settle_s: float) -> EpisodeRecord:
        """The episode of ``run_episode`` in lock-step: the sim decides, at each handled tick, whether
        the episode is over (so it ends at the same tick whatever the load); then the record."""
        assert self.monitor is not None
        sim = self.sim
        end_ns = start_ns + int(round(max_seconds * 1e9))
        settle_ns = int(round(settle_s * 1e9))

        def over() -> bool:   # on the sim's executor thread, at boundaries
            tick = sim.lockstep_tick_ns
            if tick < start_ns:      # the episode's first tick is not handled yet
                return False
            if sim.failure():
                return True
            first = sim.first_success_ns
            return tick >= end_ns or (first is not None and tick >= first + settle_ns)

        wall_timeout_s = wall_timeout_s or max_seconds * 10.0 + 60.0
        timeouts = sim.lockstep_timeouts
        sim.set_lockstep_stop(over)
        if not sim.lockstep_held.wait(wall_timeout_s):
            log.warning("task %s seed %d: wall-clock guard hit after %.0f s (lock-step sim at %.2f s of %g): "
                        "the record stops where the sim is", self.task, seed, wall_timeout_s,
                        (sim.now_ns - start_ns) * 1e-9, max_seconds)
            self._hold_sim()
        last_ns = sim.lockstep_tick_ns
        if not self.monitor.started and not self.monitor.wait_for_tick(start_ns, 10.0):
            raise RolloutError(f"task {self.task} seed {seed}: the expert never ticked in lock-step "
                               f"({sim.lockstep_timeouts} handshakes timed out)")
        if not self.monitor.wait_for_tick(last_ns, 10.0):   # its status reached the sim, not yet us
            log.warning("task %s seed %d: the status of the last tick (%.3f s) did not reach the monitor",
                        self.task, seed, (last_ns - start_ns) * 1e-9)
        if sim.lockstep_timeouts > timeouts:
            log.warning("task %s seed %d: %d lock-step handshakes timed out: this episode depends on timing",
                        self.task, seed, sim.lockstep_timeouts - timeouts)
        return self.monitor.end(policy=policy_name, task=self.task, seed=seed, control_rate_hz=control_rate_hz,
                                failed=sim.failure(), success_ns=sim.first_success_ns)


def ar_expert_factory(policy: Any, expert_overrides: Mapping[str, Any] | None = None
                      ) -> Callable[[Any, RolloutGraph], Any]:
    """``expert_factory`` for ``RolloutGraph`` running ``policy`` in an ActionExpertNode."""

    def factory(context: Any, graph: RolloutGraph) -> Any:
        from arvla_action_expert.node import ActionExpertNode
        from arvla_sim.robot import JOINT_NAMES

        lower, upper = graph.joint_limits
        params = expert_parameters(JOINT_NAMES, lower, upper,
                                   {"control_rate": float(policy.control_rate_hz),
                                    **dict(expert_overrides or {})})
        return ActionExpertNode(policy=policy, context=context, parameter_overrides=_parameters(params))

    return factory


def default_domain_id() -> int | None:
    """Keep the env's ROS_DOMAIN_ID if set; else a private one so a demo never talks to a robot."""
    if os.environ.get("ROS_DOMAIN_ID"):
        return None
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    return 150 + os.getpid() % 80


def run_episodes(policy: Any, *, task: str, seeds: Sequence[int], max_seconds: float,
                 sim_overrides: Mapping[str, Any] | None = None,
                 expert_overrides: Mapping[str, Any] | None = None,
                 perception_overrides: Mapping[str, Any] | None = None,
                 keep_frames: bool = False, progress: bool = True, policy_name: str = "ar",
                 graph: RolloutGraph | None = None, log_level: str | None = None) -> list[EpisodeRecord]:
    """Closed-loop episodes of ``policy`` on ``task`` through the real ROS graph (see module doc).

    ``graph``: an already started ``RolloutGraph`` to reuse (its task is switched to ``task``);
    without one, a graph is started for these episodes and closed afterwards.
    """
    from tqdm import tqdm

    if max_seconds <= 0:
        raise ValueError(f"max_seconds must be > 0, got {max_seconds}")
    own = graph is None
    if graph is None:
        graph = RolloutGraph(task=task, expert_factory=ar_expert_factory(policy, expert_overrides),
                             sim_overrides=sim_overrides, perception_overrides=perception_overrides,
                             keep_frames=keep_frames, domain_id=default_domain_id(), log_level=log_level)
        graph.start()
    records: list[EpisodeRecord] = []
    try:
        graph.set_task(task)
        bar = tqdm(list(seeds), desc=f"rollout {policy_name} {task}", unit="ep", disable=not progress)
        wins = 0
        for seed in bar:
            rec = graph.run_episode(int(seed), max_seconds=max_seconds, policy_name=policy_name,
                                    control_rate_hz=float(policy.control_rate_hz))
            records.append(rec)
            wins += rec.success
            bar.set_postfix(success=f"{wins}/{len(records)}")
    finally:
        if own:
            graph.close()
    return records

