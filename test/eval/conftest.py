"""Fixtures for the eval tests: synthetic demonstration bags written with rosbags' own Writer
(independent of arvla_data.bag's BagRecorder), in MCAP and sqlite3, as ``ros2 bag record``
would leave them: header stamps on the sim clock, receive times on the wall clock."""

from __future__ import annotations

import pathlib
from typing import Callable

import numpy as np
import pytest
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_types_from_msg, get_typestore

ROOT = pathlib.Path(__file__).resolve().parents[2]

JOINTS = ["j1", "j2", "j3"]
T0 = 1_000_000_000_000  # sim-clock stamp of the first joint state (1000 s)
WALL_OFFSET = 50_000_000_000  # receive time = stamp + 50 s (recorder on another clock)
DT = 50_000_000  # 20 Hz control grid
STATE_PERIOD = 10_000_000  # joint states at 100 Hz


def state_at(t_ns: int) -> np.ndarray:
    """Joint positions (j1, j2, j3) at sim time t."""
    s = (t_ns - T0) / 1e9
    return np.array([np.sin(s), 0.5 * s, -s * s])


def command_for(k: int) -> np.ndarray:
    """The (j1, j2, j3) target commanded at control step k."""
    return np.array([k, 10 + k, 100 + k], dtype=np.float64) * 0.01


def demo_typestore():
    store = get_typestore(Stores.ROS2_KILTED)
    types = {}
    for path in sorted((ROOT / "arvla_msgs" / "msg").glob("*.msg")):
        types.update(get_types_from_msg(path.read_text(), f"arvla_msgs/msg/{path.stem}"))
    store.register(types)
    return store


def _stamp(store, ns: int):
    return store.types["builtin_interfaces/msg/Time"](sec=ns // 1_000_000_000,
                                                       nanosec=ns % 1_000_000_000)


def _header(store, ns: int, frame_id: str = ""):
    return store.types["std_msgs/msg/Header"](stamp=_stamp(store, ns), frame_id=frame_id)


def write_demo_bag(path: pathlib.Path, *, storage: str = "mcap", seconds: float = 2.0,
                   commands: bool = True, prefixes: bool = True, images: bool = True,
                   instruction: str = "stack the cubes") -> pathlib.Path:
    """A 2 s demonstration: 100 Hz joint states (extra gripper joint, shuffled order), 20 Hz
    trajectory commands with zero stamps, 5 Hz prefixes, 10 Hz 4x6 images, one instruction."""
    store = demo_typestore()
    T = store.types
    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    msgs: list[tuple[str, int, object]] = []
    n_states = int(seconds * 1e9 / STATE_PERIOD) + 1
    for i in range(n_states):
        t = T0 + i * STATE_PERIOD
        q = state_at(t)
        msgs.append(("/joint_states", t + WALL_OFFSET + 1_000_000, T["sensor_msgs/msg/JointState"](
            header=_header(store, t), name=["finger", "j3", "j1", "j2"],
            position=np.array([0.04, q[2], q[0], q[1]]), velocity=np.zeros(0),
            effort=np.zeros(0))))
    if commands:
        for k in range(int(seconds * 1e9 / DT)):
            t = T0 + k * DT + 2_000_000
            point = T["trajectory_msgs/msg/JointTrajectoryPoint"](
                positions=command_for(k)[[2, 0, 1]], velocities=np.zeros(0),
                accelerations=np.zeros(0), effort=np.zeros(0),
                time_from_start=T["builtin_interfaces/msg/Duration"](sec=0, nanosec=DT))
            msgs.append(("/arm_controller/joint_trajectory", t + WALL_OFFSET,
                         T["trajectory_msgs/msg/JointTrajectory"](
                             header=_header(store, 0), joint_names=["j3", "j1", "j2"],
                             points=[point])))
    if images:
        for i in range(int(seconds * 10)):
            t = T0 + i * 100_000_000 + 3_000_000
            pix = np.full((4, 6, 3), i, np.uint8)
            pix[..., 2] = 200  # blue channel marks BGR->RGB handling
            msgs.append(("/camera/image_raw", t + WALL_OFFSET + 4_000_000, T["sensor_msgs/msg/Image"](
                header=_header(store, t, "cam"), height=4, width=6, encoding="bgr8",
                is_bigendian=0, step=18, data=pix[..., ::-1].reshape(-1).copy())))
    if prefixes:
        for i in range(int(seconds * 5)):
            t = T0 + i * 200_000_000 + 3_000_000  # the stamp of an image
            msgs.append(("/arvla/vl_prefix", t + WALL_OFFSET + 80_000_000, T["arvla_msgs/msg/VLPrefix"](
                header=_header(store, t, "cam"), frame_seq=i, instruction=instruction,
                model_id="tiny@8px", token_count=2, dim=3,
                data=(i + np.arange(6)).astype(np.float32), compute_stamp=_stamp(store, t + 80_000_000))))
    if instruction:
        msgs.append(("/arvla/instruction", T0 + WALL_OFFSET, T["std_msgs/msg/String"](data=instruction)))
    msgs.sort(key=lambda m: m[1])
    with Writer(path, version=9, storage_plugin=plugin) as writer:
        conns = {}
        for topic, _, msg in msgs:
            if topic not in conns:
                conns[topic] = writer.add_connection(topic, msg.__msgtype__, typestore=store)
        for topic, t, msg in msgs:
            writer.write(conns[topic], t, store.serialize_cdr(msg, msg.__msgtype__))
    return path


@pytest.fixture
def demo_bag(tmp_path) -> Callable[..., pathlib.Path]:
    counter = iter(range(1000))

    def make(**kwargs) -> pathlib.Path:
        return write_demo_bag(tmp_path / f"demo_{next(counter)}", **kwargs)

    return make


@pytest.fixture
def demo():
    """The constants and ground-truth functions the demo bags were built from."""
    import types

    return types.SimpleNamespace(DT=DT, JOINTS=JOINTS, STATE_PERIOD=STATE_PERIOD, T0=T0,
                                 WALL_OFFSET=WALL_OFFSET, command_for=command_for,
                                 state_at=state_at)
