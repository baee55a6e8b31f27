"""LeRobot-format import on a tiny dataset built by the test (v2.1 layout, PNG image feature)."""

from __future__ import annotations

import io
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from arvla.cli import main as arvla_main
from arvla_data.episodes import EpisodeError, load_episode
from arvla_data.lerobot import LeRobotDataset, import_lerobot

MOTORS = ["waist", "shoulder", "elbow", "gripper"]


def _png(value: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((5, 7, 3), value, np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def make_dataset(root, *, lengths=(6, 4), video=False, gap=False):
    """Episode e, frame i: state = e*100 + i + [0, .1, .2, .3], action = state + 1."""
    (root / "meta").mkdir(parents=True)
    image_feature = {"dtype": "video" if video else "image", "shape": [5, 7, 3],
                     "names": ["height", "width", "channel"]}
    info = {"codebase_version": "v2.1", "robot_type": "toy", "fps": 30,
            "total_episodes": len(lengths), "chunks_size": 1000,
            "data_path": "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet",
            "features": {
                "observation.state": {"dtype": "float32", "shape": [4], "names": {"motors": MOTORS}},
                "action": {"dtype": "float32", "shape": [4], "names": {"motors": MOTORS}},
                "observation.images.top": image_feature,
                "episode_index": {"dtype": "int64", "shape": [1]},
                "frame_index": {"dtype": "int64", "shape": [1]},
                "task_index": {"dtype": "int64", "shape": [1]}}}
    (root / "meta" / "info.json").write_text(json.dumps(info))
    (root / "meta" / "tasks.jsonl").write_text(
        '{"task_index": 0, "task": "fold the towel"}\n{"task_index": 1, "task": "open the drawer"}\n')
    chunk = root / "data" / "chunk-000"
    chunk.mkdir(parents=True)
    for e, n in enumerate(lengths):
        frames = list(range(n))[::-1]  # stored out of order on purpose
        if gap:
            frames[0] += 1
        state = [[e * 100 + i + d / 10 for d in range(4)] for i in frames]
        table = pa.table({
            "observation.state": pa.array(state, pa.list_(pa.float32(), 4)),
            "action": pa.array([[v + 1 for v in row] for row in state], pa.list_(pa.float32())),
            "observation.images.top": pa.array([{"bytes": _png(10 * e + i), "path": None}
                                                for i in frames],
                                               pa.struct([("bytes", pa.binary()), ("path", pa.string())])),
            "timestamp": pa.array([i / 30 for i in frames], pa.float32()),
            "frame_index": pa.array(frames, pa.int64()),
            "episode_index": pa.array([e] * n, pa.int64()),
            "task_index": pa.array([e] * n, pa.int64()),
        })
        pq.write_table(table, chunk / f"episode_{e:06d}.parquet")
    return root


def test_import_states_actions_images_metadata(tmp_path):
    root = make_dataset(tmp_path / "ds")
    files = import_lerobot(root, tmp_path / "out", image_key="observation.images.top",
                           progress=False)
    assert [f.name for f in files] == ["episode_000000.npz", "episode_000001.npz"]
    ep = load_episode(files[1])
    assert ep["states"].shape == (4, 4) and ep["states"].dtype == np.float32
    np.testing.assert_allclose(ep["states"][:, 0], [100, 101, 102, 103])  # sorted by frame_index
    np.testing.assert_allclose(ep["actions"], ep["states"] + 1)
    assert ep["images"].shape == (4, 5, 7, 3) and ep["images"][2, 0, 0, 0] == 12
    np.testing.assert_array_equal(ep["frame_steps"], np.arange(4))
    assert ep["frame_tokens"].shape == (4, 0, 0)
    assert list(ep["joint_names"]) == MOTORS
    assert float(ep["control_rate_hz"]) == 30.0 and str(ep["task"]) == "open the drawer"


def test_import_without_images_and_subset(tmp_path, capsys):
    root = make_dataset(tmp_path / "ds")
    assert arvla_main(["import-lerobot", str(root), "-o", str(tmp_path / "out"),
                       "--episodes", "0"]) == 0
    ep = load_episode(tmp_path / "out" / "episode_000000.npz")
    assert ep["states"].shape == (6, 4) and "images" not in ep and ep["frame_steps"].size == 0
    assert not (tmp_path / "out" / "episode_000001.npz").exists()
    assert arvla_main(["import-lerobot", str(root), "-o", str(tmp_path / "o2"),
                       "--episodes", "7"]) == 1
    assert "no episode(s) [7]" in capsys.readouterr().err


def test_bad_datasets_are_named(tmp_path):
    with pytest.raises(EpisodeError, match="not a LeRobot dataset: .*info.json not found"):
        LeRobotDataset(tmp_path)
    video = make_dataset(tmp_path / "video", video=True)
    with pytest.raises(EpisodeError, match="'observation.images.top' is a video feature but "
                                           "'video_path' is None"):
        LeRobotDataset(video, image_key="observation.images.top")
    with pytest.raises(EpisodeError, match="no feature 'observation.effort'"):
        LeRobotDataset(video, state_key="observation.effort")
    gap = make_dataset(tmp_path / "gap", gap=True)
    with pytest.raises(EpisodeError, match="frame_index is not contiguous"):
        list(LeRobotDataset(gap).episodes())
    broken = make_dataset(tmp_path / "broken")
    (broken / "data" / "chunk-000" / "episode_000001.parquet").write_bytes(b"PAR1 garbage")
    with pytest.raises(EpisodeError, match="cannot read .*episode_000001.parquet"):
        list(LeRobotDataset(broken).episodes())
