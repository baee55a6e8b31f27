"""LeRobot interop with video: v2.1 / v3.0 datasets with MP4 made here, import (frames by
timestamp, prefixes by a tiny backbone), export to v3.0 and back, LeRobot's own loader.

The test videos are written with PyAV directly (libx264 at crf 0, B-frames on: frames are
reordered in the file), not with arvla's VideoWriter. Every frame differs (a gray level and a
bar that move with the frame index, an offset per episode and camera), so a frame off by one
is caught: each decoded frame must be nearest to the frame written for its row.
"""

from __future__ import annotations

import fractions
import json
import pathlib

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from arvla.cli import main as arvla_main
from arvla_data.episodes import EpisodeError, episode_metadata, load_episode, save_episode
from arvla_data.lerobot import LeRobotDataset, import_lerobot
from arvla_data.lerobot_export import export_lerobot

av = pytest.importorskip("av")

H, W = 32, 48
MOTORS = ["waist", "shoulder", "elbow", "gripper"]
CAMERAS = ("observation.images.top", "observation.images.wrist")
MAE_MAX = 8.0  # mean abs error per pixel, uint8 units (8/255): codec + RGB<->YUV rounding


def frame(e: int, i: int, camera: int = 0) -> np.ndarray:
    """A frame that differs from every other one of its episode and camera."""
    img = np.empty((H, W, 3), np.uint8)
    img[:] = (16 + 9 * i + 3 * e) % 256, (40 * e + 70 * camera) % 256, (200 - 60 * camera) % 256
    img[:, (2 * i) % W: (2 * i) % W + 4] = 255 - 120 * camera  # a bar moving with i
    return img


def write_mp4(path: pathlib.Path, frames: list[np.ndarray], fps: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=fps)
        s.width, s.height, s.pix_fmt = W, H, "yuv420p"
        s.options = {"crf": "0"}
        for i, img in enumerate(frames):
            f = av.VideoFrame.from_ndarray(img, format="rgb24")
            f.pts, f.time_base = i, fractions.Fraction(1, fps)
            c.mux(s.encode(f))
        c.mux(s.encode())


def _state(e: int, n: int) -> np.ndarray:
    return np.array([[e * 100 + i + d / 10 for d in range(4)] for i in range(n)], np.float32)


def _video_feature() -> dict:
    return {"dtype": "video", "shape": [H, W, 3], "names": ["height", "width", "channels"]}


def _data_table(e: int, n: int, fps: float, first_index: int = 0, reverse: bool = False) -> pa.Table:
    rows = list(range(n))[::-1] if reverse else list(range(n))
    state = _state(e, n)[rows]
    return pa.table({
        "observation.state": pa.array(state.tolist(), pa.list_(pa.float32(), 4)),
        "action": pa.array((state + 1).tolist(), pa.list_(pa.float32(), 4)),
        "timestamp": pa.array([i / fps for i in rows], pa.float32()),
        "frame_index": pa.array(rows, pa.int64()),
        "episode_index": pa.array([e] * n, pa.int64()),
        "index": pa.array([first_index + i for i in rows], pa.int64()),
        "task_index": pa.array([e % 2] * n, pa.int64()),
    })


def make_v21(root: pathlib.Path, *, lengths=(7, 5), fps=15, video_fps=None) -> pathlib.Path:
    """LeRobot v2.1: one parquet and one MP4 per episode (rows stored in reverse order)."""
    (root / "meta").mkdir(parents=True)
    info = {"codebase_version": "v2.1", "robot_type": "toy", "fps": fps,
            "total_episodes": len(lengths), "chunks_size": 1000,
            "data_path": "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet",
            "video_path": "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4",
            "features": {"observation.state": {"dtype": "float32", "shape": [4],
                                               "names": {"motors": MOTORS}},
                         "action": {"dtype": "float32", "shape": [4], "names": {"motors": MOTORS}},
                         CAMERAS[0]: _video_feature()}}
    (root / "meta" / "info.json").write_text(json.dumps(info))
    (root / "meta" / "tasks.jsonl").write_text(
        '{"task_index": 0, "task": "fold the towel"}\n{"task_index": 1, "task": "open the drawer"}\n')
    for e, n in enumerate(lengths):
        path = root / "data" / "chunk-000" / f"episode_{e:06d}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(_data_table(e, n, fps, reverse=True), path)
        write_mp4(root / "videos" / "chunk-000" / CAMERAS[0] / f"episode_{e:06d}.mp4",
                  [frame(e, i) for i in range(n)], video_fps or fps)
    return root


def make_v30(root: pathlib.Path, *, lengths=(6, 8, 5), fps=10, short_video=0,
             span_cut=0.0) -> pathlib.Path:
    """LeRobot v3.0: all episodes in one data file and, per camera, one MP4 holding the
    episodes one after another (``short_video`` frames cut off its end; ``span_cut`` seconds
    off the last episode's recorded span)."""
    (root / "meta" / "episodes" / "chunk-000").mkdir(parents=True)
    features = {"observation.state": {"dtype": "float32", "shape": [4], "names": MOTORS},
                "action": {"dtype": "float32", "shape": [4], "names": MOTORS},
                **{cam: _video_feature() for cam in CAMERAS}}
    info = {"codebase_version": "v3.0", "robot_type": "toy", "fps": fps,
            "total_episodes": len(lengths), "total_frames": sum(lengths), "chunks_size": 1000,
            "data_path": "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet",
            "video_path": "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4",
            "features": features}
    (root / "meta" / "info.json").write_text(json.dumps(info))
    pq.write_table(pa.table({"task_index": [0, 1], "task": ["fold the towel", "open the drawer"]}),
                   root / "meta" / "tasks.parquet")
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    data = pa.concat_tables([_data_table(e, n, fps, int(s)) for e, (n, s) in
                             enumerate(zip(lengths, starts))])
    (root / "data" / "chunk-000").mkdir(parents=True)
    pq.write_table(data, root / "data" / "chunk-000" / "file-000.parquet")
    episodes = {"episode_index": list(range(len(lengths))), "length": list(lengths),
                "tasks": [[("fold the towel", "open the drawer")[e % 2]] for e in range(len(lengths))],
                "dataset_from_index": starts.tolist(),
                "dataset_to_index": (starts + np.asarray(lengths)).tolist()}
    for c, cam in enumerate(CAMERAS):
        frames = [frame(e, i, c) for e, n in enumerate(lengths) for i in range(n)]
        write_mp4(root / "videos" / cam / "chunk-000" / "file-000.mp4",
                  frames[:len(frames) - short_video], fps)
        begin, end = starts / fps, (starts + np.asarray(lengths)) / fps
        end[-1] -= span_cut
        episodes.update({f"videos/{cam}/chunk_index": [0] * len(lengths),
                         f"videos/{cam}/file_index": [0] * len(lengths),
                         f"videos/{cam}/from_timestamp": begin.tolist(),
                         f"videos/{cam}/to_timestamp": end.tolist()})
    pq.write_table(pa.table(episodes), root / "meta" / "episodes" / "chunk-000" / "file-000.parquet")
    return root


def assert_frames(images: np.ndarray, e: int, steps, camera: int = 0) -> None:
    """Each image close to the frame written for its step, and nearest to it of all the
    episode's frames (the order is right)."""
    written = np.stack([frame(e, i, camera) for i in range(max(steps) + 3)]).astype(np.int16)
    for img, step in zip(images, steps):
        err = np.abs(written - img.astype(np.int16)).mean(axis=(1, 2, 3))
        assert err[step] < MAE_MAX, (e, step, err[step])
        assert int(np.argmin(err)) == step, (e, step, err)


@pytest.fixture(scope="module")
def tiny_perception(tmp_path_factory) -> dict:
    """Perception parameters of a tiny randomly initialised ResNet saved like a downloaded
    model (no instruction encoder): the backbone path users run, no weights fetched."""
    import torch
    from transformers import ResNetConfig, ResNetModel

    d = tmp_path_factory.mktemp("tiny-resnet")
    torch.manual_seed(0)
    ResNetModel(ResNetConfig(num_channels=3, embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1],
                             layer_type="basic", hidden_act="relu")).save_pretrained(d)
    return {"backbone": "transformers", "model_path": str(d), "text_model_path": "none",
            "image_size": 32, "token_grid": [1, 2], "num_threads": 1}


# --------------------------------------------------------------------------------------------- import


def test_v21_per_episode_video_decodes_frame_accurately(tmp_path):
    root = make_v21(tmp_path / "ds")
    files = import_lerobot(root, tmp_path / "out", image_key=CAMERAS[0], progress=False)
    for e, f in enumerate(files):
        ep = load_episode(f)
        n = (7, 5)[e]
        np.testing.assert_array_equal(ep["states"], _state(e, n))  # rows sorted by frame_index
        np.testing.assert_array_equal(ep["frame_steps"], np.arange(n))
        assert ep["images"].shape == (n, H, W, 3)
        assert_frames(ep["images"], e, range(n))
        assert list(ep["joint_names"]) == MOTORS and float(ep["control_rate_hz"]) == 15.0
        assert str(ep["task"]) == ("fold the towel", "open the drawer")[e]


def test_v30_two_cameras_import_with_frames_and_prefixes(tmp_path, tiny_perception):
    from arvla_data.prefixes import OfflinePrefixes

    root = make_v30(tmp_path / "ds")
    lengths = (6, 8, 5)
    ds = LeRobotDataset(root, image_key=CAMERAS[1])
    assert ds.camera_keys == sorted(CAMERAS)
    for c, cam in enumerate(CAMERAS):  # both cameras, episodes in the middle of the files
        for e, ep in LeRobotDataset(root, image_key=cam).episodes():
            assert_frames(ep["images"], e, range(lengths[e]), camera=c)

    files = import_lerobot(root, tmp_path / "out", image_key=CAMERAS[1], perception=tiny_perception,
                           batch_size=4, progress=False)  # batches split episodes
    backbone = OfflinePrefixes(tiny_perception, "").backbone
    for e, f in enumerate(files):
        ep = load_episode(f)
        assert "images" not in ep  # the demo's choice: tokens kept, frames dropped
        assert ep["frame_tokens"].shape == (lengths[e], backbone.token_count, backbone.dim)
        assert str(ep["model_id"]) == backbone.model_id
        frames = np.stack([frame(e, i, 1) for i in range(lengths[e])])
        expected = backbone.encode_batch(list(frames), str(ep["task"]))
        np.testing.assert_allclose(ep["frame_tokens"], expected, atol=0.05 * np.abs(expected).max())

    strided = import_lerobot(root, tmp_path / "out2", image_key=CAMERAS[0], episodes=[1],
                             perception=tiny_perception, keep_images=True, frame_stride=3,
                             progress=False)
    ep = load_episode(strided[0])
    np.testing.assert_array_equal(ep["frame_steps"], [0, 3, 6])
    assert ep["frame_tokens"].shape[0] == 3
    assert_frames(ep["images"], 1, [0, 3, 6], camera=0)


def test_import_cli_with_perception_params(tmp_path, tiny_perception, capsys):
    root = make_v30(tmp_path / "ds", lengths=(4, 3))
    params = tmp_path / "perception.yaml"
    params.write_text(json.dumps({"arvla_perception": {"ros__parameters": {
        **tiny_perception, "use_sim_time": False}}}))  # JSON is YAML
    out = tmp_path / "out"
    assert arvla_main(["import-lerobot", str(root), "-o", str(out), "--image-key", CAMERAS[0],
                       "--perception-params", str(params), "--joint-names", "j1", "j2", "j3",
                       "j4"]) == 0
    ep = load_episode(out / "episode_000001.npz")
    assert ep["frame_tokens"].shape[:2] == (3, 2) and str(ep["model_id"])
    assert list(ep["joint_names"]) == ["j1", "j2", "j3", "j4"] and "images" not in ep
    assert arvla_main(["import-lerobot", str(root), "-o", str(out), "--prefixes"]) == 1
    assert "prefixes need frames" in capsys.readouterr().err


def test_bad_video_inputs_name_the_episode_and_key(tmp_path):
    top = f"key '{CAMERAS[0]}'"
    with pytest.raises(EpisodeError, match="no image feature 'observation.images.side'.*top"):
        LeRobotDataset(make_v30(tmp_path / "a"), image_key="observation.images.side")

    wrong_fps = make_v21(tmp_path / "fps", video_fps=30)  # info.json says 15
    with pytest.raises(EpisodeError, match=f"episode 0 {top}: video .* runs at 30 fps, the "
                                           "dataset's fps is 15"):
        list(LeRobotDataset(wrong_fps, image_key=CAMERAS[0]).episodes())
    info = json.loads((wrong_fps / "meta" / "info.json").read_text())
    info["fps"] = 30  # now the rows' timestamps (1/15 s apart) disagree with it
    (wrong_fps / "meta" / "info.json").write_text(json.dumps(info))
    with pytest.raises(EpisodeError, match=f"episode 0 {top}: timestamps step 0.0666.* fps 30"):
        list(LeRobotDataset(wrong_fps, image_key=CAMERAS[0]).episodes())

    corrupt = make_v21(tmp_path / "corrupt")
    (corrupt / "videos" / "chunk-000" / CAMERAS[0] / "episode_000001.mp4").write_bytes(
        b"\x00\x00\x00\x18ftypmp42" + b"garbage" * 50)
    eps = LeRobotDataset(corrupt, image_key=CAMERAS[0]).episodes()
    assert next(eps)[0] == 0  # episode 0 is fine
    with pytest.raises(EpisodeError, match=f"episode 1 {top}: cannot open video .*episode_000001"
                                           r".mp4 \(corrupt"):
        next(eps)

    (corrupt / "videos" / "chunk-000" / CAMERAS[0] / "episode_000001.mp4").unlink()
    with pytest.raises(EpisodeError, match=f"episode 1 {top}: video file .* not found"):
        list(LeRobotDataset(corrupt, image_key=CAMERAS[0]).episodes([1]))

    short = make_v30(tmp_path / "short", short_video=2)  # the file lacks episode 2's last frames
    with pytest.raises(EpisodeError, match=f"episode 2 {top}: time 1.7000 s is outside video .*"
                                           r"last frame is at 1.6000 s"):
        list(LeRobotDataset(short, image_key=CAMERAS[0]).episodes([2]))
    cut = make_v30(tmp_path / "cut", span_cut=0.2)  # the span ends before the rows do
    with pytest.raises(EpisodeError, match=f"episode 2 {top}: timestamp 0.4000 s \\(1.8000 s in .*"
                                           r"\) is outside the episode's video span 1.4000..1.7000 s"):
        list(LeRobotDataset(cut, image_key=CAMERAS[0]).episodes([2]))


# --------------------------------------------------------------------------------------------- export


def arvla_episodes(d: pathlib.Path, *, images: bool = True, lengths=(9, 12, 7)) -> list[pathlib.Path]:
    """Episodes as the demo / bag2episodes make them: a camera at half the control rate
    (frames on every other step, the first on step 1), tokens when there are no images."""
    rng = np.random.default_rng(0)
    paths = []
    for e, T in enumerate(lengths):
        steps = np.arange(1, T, 2)
        ep = {"states": rng.standard_normal((T, 4)).astype(np.float32),
              "actions": rng.standard_normal((T, 4)).astype(np.float32),
              "frame_steps": steps.astype(np.int64)}
        if images:
            ep["images"] = np.stack([frame(e, int(s)) for s in steps])
            ep["frame_tokens"] = np.zeros((len(steps), 0, 0), np.float32)
        else:
            ep["frame_tokens"] = rng.standard_normal((len(steps), 5, 8)).astype(np.float32)
        ep.update(episode_metadata(20.0, "", MOTORS, ("pick_lift", "push")[e % 2]))
        paths.append(save_episode(d / f"ep_{e:02d}.npz", ep))
    return paths


def test_export_import_round_trip(tmp_path):
    paths = arvla_episodes(tmp_path / "eps")
    summary = export_lerobot(paths, tmp_path / "lr", robot_type="panda", progress=False)
    assert summary.episodes == 3 and summary.frames == 28 and summary.tasks == ["pick_lift", "push"]
    root = tmp_path / "lr"
    info = json.loads((root / "meta" / "info.json").read_text())
    assert info["codebase_version"] == "v3.0" and info["fps"] == 20
    assert (info["total_episodes"], info["total_frames"], info["total_tasks"]) == (3, 28, 2)
    cam = info["features"]["observation.images.camera"]
    assert cam["dtype"] == "video" and cam["shape"] == [H, W, 3]
    assert cam["info"]["video.pix_fmt"] == "yuv420p" and cam["info"]["video.fps"] == 20
    assert info["features"]["observation.state"]["names"] == MOTORS
    meta = pq.read_table(root / "meta" / "episodes" / "chunk-000" / "file-000.parquet").to_pydict()
    assert meta["videos/observation.images.camera/from_timestamp"] == [0.0, 0.45, 1.05]
    assert meta["dataset_to_index"] == [9, 21, 28] and meta["tasks"][1] == ["push"]
    stats = json.loads((root / "meta" / "stats.json").read_text())
    assert np.asarray(stats["observation.images.camera"]["mean"]).shape == (3, 1, 1)
    assert (root / "videos" / "observation.images.camera" / "chunk-000" / "file-000.mp4").is_file()
    assert not (tmp_path / ".lr.partial").exists()

    back = import_lerobot(root, tmp_path / "back", image_key="observation.images.camera",
                          progress=False)
    for e, (src, dst) in enumerate(zip(paths, back)):
        a, b = load_episode(src), load_episode(dst)
        np.testing.assert_array_equal(a["states"], b["states"])
        np.testing.assert_array_equal(a["actions"], b["actions"])
        assert list(b["joint_names"]) == MOTORS and str(b["task"]) == str(a["task"])
        assert float(b["control_rate_hz"]) == 20.0
        # every step has a frame now: the newest one at or before it (step 0: the first)
        T = len(a["states"])
        held = np.clip(np.searchsorted(a["frame_steps"], np.arange(T), side="right") - 1, 0, None)
        assert_frames(b["images"], e, a["frame_steps"][held])


@pytest.mark.parametrize("codec", ["mpeg4", "libx264"])
def test_export_rolls_files_over(tmp_path, codec):
    """Past the size limits every episode gets its own data and video file (file-000, -001..)."""
    paths = arvla_episodes(tmp_path / "eps")
    export_lerobot(paths, tmp_path / "lr", codec=codec, data_file_mb=1e-6, video_file_mb=1e-6,
                   progress=False)
    meta = pq.read_table(tmp_path / "lr" / "meta" / "episodes" / "chunk-000" / "file-000.parquet")
    assert meta.column("data/file_index").to_pylist() == [0, 1, 2]
    assert meta.column("videos/observation.images.camera/file_index").to_pylist() == [0, 1, 2]
    assert meta.column("videos/observation.images.camera/from_timestamp").to_pylist() == [0, 0, 0]
    back = import_lerobot(tmp_path / "lr", tmp_path / "back", image_key="observation.images.camera",
                          progress=False)
    for e, (src, dst) in enumerate(zip(paths, back)):
        a, b = load_episode(src), load_episode(dst)
        np.testing.assert_array_equal(a["states"], b["states"])
        held = np.clip(np.searchsorted(a["frame_steps"], np.arange(len(a["states"])), side="right")
                       - 1, 0, None)
        assert_frames(b["images"], e, a["frame_steps"][held])


def test_export_demo_style_episodes_cli(tmp_path, capsys):
    """Demo episodes keep tokens, not frames: states/actions/tasks exported, no video."""
    paths = arvla_episodes(tmp_path / "eps", images=False)
    assert arvla_main(["export-lerobot", str(tmp_path / "eps"), "-o", str(tmp_path / "lr")]) == 0
    assert "3 episodes, 28 frames, 2 task(s), no video" in capsys.readouterr().out
    info = json.loads((tmp_path / "lr" / "meta" / "info.json").read_text())
    assert info["video_path"] is None and "observation.images.camera" not in info["features"]
    back = import_lerobot(tmp_path / "lr", tmp_path / "back", progress=False)
    for src, dst in zip(paths, back):
        a, b = load_episode(src), load_episode(dst)
        np.testing.assert_array_equal(a["states"], b["states"])
        np.testing.assert_array_equal(a["actions"], b["actions"])
    assert arvla_main(["export-lerobot", str(tmp_path / "eps"), "-o", str(tmp_path / "lr")]) == 1
    assert "exists and is not an empty directory" in capsys.readouterr().err


def test_export_refuses_mixed_episodes(tmp_path):
    good = arvla_episodes(tmp_path / "a", lengths=(5,))[0]
    ep = load_episode(good)
    ep["joint_names"] = np.asarray(["a", "b", "c", "d"])
    other = save_episode(tmp_path / "b" / "names.npz", ep)
    with pytest.raises(EpisodeError, match="names.npz: joint_names .* the first episode's are"):
        export_lerobot([good, other], tmp_path / "x", progress=False)
    ep = load_episode(good)
    ep["control_rate_hz"] = np.asarray(12.5)
    odd_rate = save_episode(tmp_path / "b" / "rate.npz", ep)
    with pytest.raises(EpisodeError, match="rate.npz: control_rate_hz 12.5 is not a whole number"):
        export_lerobot([odd_rate], tmp_path / "y", progress=False)
    ep = load_episode(good)
    ep["images"] = ep["images"][:, :31]
    odd_size = save_episode(tmp_path / "b" / "size.npz", ep)
    with pytest.raises(EpisodeError, match="even frame size, got 48x31"):
        export_lerobot([odd_size], tmp_path / "z", progress=False)


@pytest.mark.parametrize("file_mb", [100.0, 1e-6])  # one file / a file per episode
def test_lerobot_loads_the_export(tmp_path, file_mb):
    """LeRobot's own LeRobotDataset reads the exported dataset (skipped without lerobot)."""
    lerobot_dataset = pytest.importorskip("lerobot.datasets.lerobot_dataset")
    paths = arvla_episodes(tmp_path / "eps", lengths=(6, 5))
    export_lerobot(paths, tmp_path / "lr", data_file_mb=file_mb, video_file_mb=file_mb,
                   progress=False)
    ds = lerobot_dataset.LeRobotDataset("local/arvla_export", root=tmp_path / "lr",
                                        video_backend="pyav")
    assert (len(ds), ds.num_episodes, ds.fps) == (11, 2, 20)
    row = 0
    for e, path in enumerate(paths):
        a = load_episode(path)
        for t in range(len(a["states"])):
            item = ds[row]
            row += 1
            assert (int(item["episode_index"]), int(item["frame_index"])) == (e, t)
            np.testing.assert_array_equal(item["observation.state"].numpy(), a["states"][t])
            np.testing.assert_array_equal(item["action"].numpy(), a["actions"][t])
            assert item["task"] == str(a["task"])
            image = (item["observation.images.camera"].permute(1, 2, 0).numpy() * 255).round()
            k = max(0, int(np.searchsorted(a["frame_steps"], t, side="right")) - 1)
            assert np.abs(image - a["images"][k]).mean() < MAE_MAX
