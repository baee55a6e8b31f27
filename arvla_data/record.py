"""``arvla record``: record arvla's topics into a rosbag2 (MCAP) bag, without rosbag2_py.

A thin rclpy adapter over :class:`arvla_data.bag.BagRecorder`. Subscriptions are *raw*
(``create_subscription(..., raw=True)``): the serialised CDR bytes DDS delivered are written to
the bag unchanged, so the recording is exact and costs no deserialisation, images included.

Like ``ros2 bag record``, a topic is subscribed once a publisher for it is seen, with QoS
adapted to the publishers (reliable only if all publishers are reliable, transient-local only
if all are -- so a latched /arvla/instruction published before recording started is still
captured); the offered QoS profiles are stored in the bag for playback.

Interruption: SIGINT/SIGTERM end the recording and the bag is closed properly, with every
message received up to then (``BagRecorder.stop_on_signals``).

Losses are never silent. A subscription is KEEP_LAST (depth 100, like rosbag2), so a recorder
that falls more than a queue behind (an overloaded CPU, a slow disk) loses messages in transport:
the publisher's history drops what was never acknowledged, or our own queue overwrites what we
had not taken yet -- the latter without any middleware event. So every message's
``publication_sequence_number`` (rmw message info) is checked per publisher: a jump is a loss.
Where the rmw gives no sequence numbers, the middleware's *message lost* event is counted
instead. Each loss is logged as it happens (a warning naming the topic and how many) and
tallied in :attr:`RecordResult.lost`. Messages a publisher sent before we subscribed are not
losses: the first sequence number seen from a publisher only sets where counting starts.
"""

from __future__ import annotations

import dataclasses
import importlib
import signal
import time
from typing import Any, Callable, Sequence

from rclpy.event_handler import SubscriptionEventCallbacks
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

from arvla_base.config import require
from arvla_data.bag import BagError, BagRecorder, STORAGE_FORMATS

__all__ = ["DEFAULT_TOPICS", "RecordConfig", "RecordResult", "RecorderNode", "adapted_qos",
           "record"]

# Topics that matter for arvla (docs/CONTRACTS.md) and their types, so they can be subscribed
# even before the graph reports their type.
DEFAULT_TOPICS: dict[str, str] = {
    "/camera/image_raw": "sensor_msgs/msg/Image",
    "/joint_states": "sensor_msgs/msg/JointState",
    "/arvla/vl_prefix": "arvla_msgs/msg/VLPrefix",
    "/arm_controller/joint_trajectory": "trajectory_msgs/msg/JointTrajectory",
    "/arvla/expert_status": "arvla_msgs/msg/ExpertStatus",
    "/arvla/instruction": "std_msgs/msg/String",
}


@dataclasses.dataclass
class RecordConfig:
    """What ``arvla record`` records."""

    # Bag directory to create (must not exist).
    output: str
    # Topics to record; [] = DEFAULT_TOPICS.
    topics: list[str] = dataclasses.field(default_factory=list)
    # Also record every topic under /arvla/ that appears while recording.
    all_arvla: bool = False
    # Stop after this many seconds of recording; 0 = until SIGINT/SIGTERM.
    duration_s: float = 0.0
    # "mcap" or "sqlite3".
    storage: str = "mcap"
    # How often the graph is scanned for new publishers, s.
    discovery_period_s: float = 0.2

    def __post_init__(self) -> None:
        require(bool(self.output), "output", self.output, "must name the bag directory")
        require(self.duration_s >= 0, "duration_s", self.duration_s, "must be >= 0")
        require(self.storage in STORAGE_FORMATS, "storage", self.storage,
                f"must be one of {list(STORAGE_FORMATS)}")
        require(self.discovery_period_s > 0, "discovery_period_s", self.discovery_period_s,
                "must be > 0")
        bad = [t for t in self.topics if not t.startswith("/")]
        require(not bad, "topics", bad, "topic names must be absolute (start with '/')")


def _message_class(msgtype: str) -> Any:
    """'sensor_msgs/msg/Image' -> the generated rclpy class."""
    package, kind, name = msgtype.split("/")
    try:
        return getattr(importlib.import_module(f"{package}.{kind}"), name)
    except (ImportError, AttributeError) as err:
        raise BagError(f"message type {msgtype} is not importable in this environment: {err}") from err


def _rosbags_qos(profile: Any) -> Any:
    """rclpy QoSProfile -> rosbags Qos (both use rmw's enum values)."""
    from rosbags.interfaces import (Qos, QosDurability, QosHistory, QosLiveliness,
                                    QosReliability, QosTime)

    def dur(d: Any) -> Any:
        ns = int(d.nanoseconds)
        return QosTime(ns // 1_000_000_000, ns % 1_000_000_000)

    return Qos(QosHistory(int(profile.history)), int(profile.depth),
               QosReliability(int(profile.reliability)), QosDurability(int(profile.durability)),
               dur(profile.deadline), dur(profile.lifespan), QosLiveliness(int(profile.liveliness)),
               dur(profile.liveliness_lease_duration), bool(profile.avoid_ros_namespace_conventions))


def adapted_qos(publisher_profiles: Sequence[Any], depth: int = 100) -> QoSProfile:
    """A subscription QoS that matches every publisher (rosbag2's rule)."""
    reliable = bool(publisher_profiles) and all(
        p.reliability == ReliabilityPolicy.RELIABLE for p in publisher_profiles)
    latched = bool(publisher_profiles) and all(
        p.durability == DurabilityPolicy.TRANSIENT_LOCAL for p in publisher_profiles)
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST, depth=depth,
        reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT,
        durability=DurabilityPolicy.TRANSIENT_LOCAL if latched else DurabilityPolicy.VOLATILE)


class RecorderNode(Node):
    """Subscribes (raw) to the configured topics as their publishers appear; writes to a bag."""

    def __init__(self, bag: BagRecorder, config: RecordConfig, **node_kwargs: Any) -> None:
        super().__init__("arvla_recorder", **node_kwargs)
        self.bag = bag
        self.config = config
        self.wanted = list(dict.fromkeys(config.topics or DEFAULT_TOPICS))
        self._recorded: dict[str, Any] = {}
        self.lost: dict[str, int] = {}  # topic -> messages lost in transport (see the module doc)
        self._last_seq: dict[tuple[str, bytes], int] = {}  # (topic, publisher gid) -> last seq
        self._no_seq: set[str] = set()  # topics whose messages carry no sequence numbers
        self.timer = self.create_timer(config.discovery_period_s, self.discover)
        self.discover()

    @property
    def subscribed(self) -> list[str]:
        return sorted(self._recorded)

    def discover(self) -> None:
        """Subscribe to wanted topics (and /arvla/* with all_arvla) that now have publishers."""
        graph = dict(self.get_topic_names_and_types())
        candidates = list(self.wanted)
        if self.config.all_arvla:
            candidates += [t for t in graph if t.startswith("/arvla/") and t not in candidates]
        for topic in candidates:
            if topic in self._recorded:
                continue
            publishers = self.get_publishers_info_by_topic(topic)
            if not publishers:
                continue
            types = {p.topic_type for p in publishers}
            if len(types) != 1:
                self.get_logger().error(f"{topic}: publishers disagree on the type {sorted(types)}; "
                                        "not recording it")
                self._recorded[topic] = None
                continue
            msgtype = types.pop()
            expected = DEFAULT_TOPICS.get(topic)
            if expected and msgtype != expected:
                self.get_logger().warning(f"{topic} carries {msgtype}, arvla expects {expected}")
            profiles = [p.qos_profile for p in publishers]
            try:
                self.bag.add_topic(topic, msgtype,
                                   offered_qos=[_rosbags_qos(q) for q in profiles])
                cls = _message_class(msgtype)
            except BagError as err:
                self.get_logger().error(f"not recording {topic}: {err}")
                self._recorded[topic] = None
                continue
            events = SubscriptionEventCallbacks(
                message_lost=lambda info, topic=topic: self.on_message_lost(topic, info))
            self._recorded[topic] = self.create_subscription(
                cls, topic, lambda raw, info, topic=topic: self.on_message(topic, raw, info),
                adapted_qos(profiles), raw=True, event_callbacks=events)
            self.get_logger().info(f"recording {topic} [{msgtype}]")

    def on_message(self, topic: str, raw: bytes, info: dict[str, Any] | None = None) -> None:
        # Receive time on the node's clock (sim time with use_sim_time), like ros2 bag record.
        self.bag.write_raw(topic, self.get_clock().now().nanoseconds, raw)
        if info is not None:
            self._check_sequence(topic, info)

    def _check_sequence(self, topic: str, info: dict[str, Any]) -> None:
        seq = info.get("publication_sequence_number")
        gid = info.get("publisher_gid") or {}
        if not seq:  # this rmw does not number messages: the message-lost event counts instead
            self._no_seq.add(topic)
            return
        key = (topic, bytes(gid.get("data", b"")))
        last = self._last_seq.get(key)
        self._last_seq[key] = max(seq, last or 0)
        if last is not None and seq > last + 1:
            self._report_lost(topic, seq - last - 1, f"sequence numbers {last + 1}..{seq - 1} "
                              "never arrived")

    def on_message_lost(self, topic: str, info: Any) -> None:
        """The middleware says messages of ``topic`` were dropped before we took them."""
        n = int(info.total_count_change)
        if n <= 0:
            return
        # Once a topic's messages are numbered, its sequence gaps count the losses (the same loss
        # would otherwise be counted twice); before the first message, only the event can.
        if topic in self._no_seq or not any(k[0] == topic for k in self._last_seq):
            self._report_lost(topic, n, "the middleware reported them lost")

    def _report_lost(self, topic: str, n: int, how: str) -> None:
        self.lost[topic] = self.lost.get(topic, 0) + n
        self.get_logger().warning(
            f"lost {n} message(s) on {topic} in transport ({how}; the recorder fell more than a "
            f"queue behind); {self.lost[topic]} lost on it so far")


@dataclasses.dataclass(frozen=True)
class RecordResult:
    counts: dict[str, int]  # messages written per topic
    lost: dict[str, int]  # messages the middleware reported lost per topic (before the recorder)
    stopped_by: str  # "duration", "stop", "shutdown" or the signal's name


def record(config: RecordConfig, context: Any = None, *, use_sim_time: bool = False,
           stop: Callable[[], bool] | None = None) -> RecordResult:
    """Record until ``duration_s`` passes, ``stop()`` returns True, the context shuts down, or
    SIGINT/SIGTERM arrives; the bag is closed in every case. Must run in the main thread
    (signal handlers)."""
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.parameter import Parameter

    from arvla_data.bag import RecordingInterrupted

    stopped_by = "shutdown"
    lost: dict[str, int] = {}
    with BagRecorder(config.output, storage=config.storage) as bag, bag.stop_on_signals():
        node = RecorderNode(bag, config, context=context, parameter_overrides=[
            Parameter("use_sim_time", value=use_sim_time)])
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        started = time.monotonic()
        try:
            while context is None or context.ok():
                if config.duration_s and time.monotonic() - started >= config.duration_s:
                    stopped_by = "duration"
                    break
                if stop is not None and stop():
                    stopped_by = "stop"
                    break
                executor.spin_once(timeout_sec=0.05)
        except RecordingInterrupted as err:
            stopped_by = signal.Signals(err.signum).name
        finally:
            lost = dict(node.lost)
            executor.remove_node(node)
            node.destroy_node()
            executor.shutdown()
    return RecordResult(bag.counts, lost, stopped_by)


