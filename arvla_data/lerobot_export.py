"""Write arvla episodes as a LeRobot v3.0 dataset (``arvla export-lerobot``).

What arvla records (bags -> ``arvla bag2episodes``, the demo's collections) becomes a dataset
that LeRobot's ``LeRobotDataset`` loads, so a LeRobot user can train ACT / SmolVLA / pi0 on it
for a comparison, and that ``arvla import-lerobot`` reads back. The v3.0 layout:

    meta/info.json                             codebase_version "v3.0", fps, features (dtype,
                                               shape, names; a video's codec info), path
                                               templates, totals
    meta/stats.json                            per feature: min, max, mean, std, count (+ q01..q99
                                               for state and action); a camera's per channel
    meta/tasks.parquet                         task text (pandas index "task") -> task_index
    meta/episodes/chunk-000/file-000.parquet   per episode: length, tasks, its rows
                                               (dataset_from/to_index), data and video file, the
                                               video span videos/<key>/from_timestamp..to_timestamp
    data/chunk-000/file-000.parquet            one row per step: observation.state, action,
                                               timestamp (= frame_index / fps), frame_index,
                                               episode_index, index, task_index
    videos/<key>/chunk-000/file-000.mp4        the camera, one frame per step, episodes one
                                               after another (yuv420p, frame i at i / fps s)

Files roll over to file-001, ... past ``data_file_mb`` / ``video_file_mb`` (LeRobot's 100 and
200 MB), one chunk holding at most 1000 files. One row group per episode in the data file, as
LeRobot writes them.

An arvla episode has a frame only at its ``frame_steps`` (a 10 Hz camera on a 20 Hz control
grid, say); a LeRobot row has one at every step, so a step without its own frame shows the
newest frame before it (steps before the first frame show the first). The prefixes
(``frame_tokens``) are arvla's own and are not exported; ``import-lerobot --prefixes``
computes them again from the video. Episodes are written one at a time; the dataset is built
under a hidden ``.<name>.partial`` directory and renamed when complete.
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import shutil
from typing import Any, NamedTuple, Sequence

import numpy as np

from arvla_base.episode import EpisodeError, load_episode

__all__ = ["ExportSummary", "export_lerobot"]

CODEBASE_VERSION = "v3.0"
CHUNKS_SIZE = 1000  # files per chunk directory
DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
EPISODES_PATH = "meta/episodes/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
QUANTILES = {"q01": 0.01, "q10": 0.10, "q50": 0.50, "q90": 0.90, "q99": 0.99}
DEFAULT_FEATURES = ("timestamp", "frame_index", "episode_index", "index", "task_index")


class ExportSummary(NamedTuple):
    root: pathlib.Path
    episodes: int
    frames: int
    tasks: list[str]
    camera_key: str | None   # None: the episodes had no images, the dataset has no video


class _Place:
    """Chunk and file index of the file being written; the next file past CHUNKS_SIZE files
    goes into the next chunk."""

    def __init__(self) -> None:
        self.chunk = self.file = 0

    def advance(self) -> None:
        self.file += 1
        if self.file == CHUNKS_SIZE:
            self.chunk, self.file = self.chunk + 1, 0


def _fps_of(rate: float, where: str) -> int:
    fps = int(round(rate))
    if fps < 1 or abs(rate - fps) > 1e-6:
        raise EpisodeError(f"{where}: control_rate_hz {rate:g} is not a whole number of frames per "
                           "second (LeRobot's fps is an integer)")
    return fps


def _frame_per_step(frame_steps: np.ndarray, T: int) -> np.ndarray:
    """(T,) index of each step's frame: the newest at or before it (before the first: the first)."""
    idx = np.searchsorted(frame_steps, np.arange(T), side="right") - 1
    return np.clip(idx, 0, None)


def _numeric_stats(values: np.ndarray) -> dict[str, list[float]]:
    v = np.asarray(values, np.float64)
    out = {"min": v.min(0), "max": v.max(0), "mean": v.mean(0), "std": v.std(0)}
    out.update({k: np.quantile(v, q, axis=0) for k, q in QUANTILES.items()})
    stats = {k: np.asarray(x).tolist() for k, x in out.items()}
    stats["count"] = [int(len(v))]
    return stats


class _ImageStats:
    """Per-channel min / max / mean / std of frames scaled to [0, 1], accumulated frame by frame
    (shape (3, 1, 1) as LeRobot keeps them)."""

    def __init__(self) -> None:
        self.n = self.pixels = 0
        self.sum = np.zeros(3)
        self.sumsq = np.zeros(3)
        self.min = np.full(3, np.inf)
        self.max = np.full(3, -np.inf)

    def add(self, image: np.ndarray, count: int = 1) -> None:
        """One (H, W, 3) uint8 frame, shown ``count`` times."""
        x = image.reshape(-1, 3).astype(np.float64) / 255.0
        self.n += count
        self.pixels += count * len(x)
        self.sum += count * x.sum(0)
        self.sumsq += count * (x * x).sum(0)
        self.min = np.minimum(self.min, x.min(0))
        self.max = np.maximum(self.max, x.max(0))

    def stats(self) -> dict[str, Any]:
        mean = self.sum / self.pixels
        std = np.sqrt(np.maximum(self.sumsq / self.pixels - mean * mean, 0.0))
        col = lambda v: [[[float(c)]] for c in v]  # noqa: E731 - (3,) -> (3, 1, 1)
        return {"min": col(self.min), "max": col(self.max), "mean": col(mean), "std": col(std),
                "count": [self.n]}


def _tasks_table(tasks: list[str]) -> Any:
    """meta/tasks.parquet as LeRobot writes it with pandas: column task_index, index "task"
    (the pandas metadata makes pandas read the task text back as the index)."""
    import pyarrow as pa

    pandas_meta = {
        "index_columns": ["task"],
        "column_indexes": [{"name": None, "field_name": None, "pandas_type": "unicode",
                            "numpy_type": "object", "metadata": {"encoding": "UTF-8"}}],
        "columns": [
            {"name": "task_index", "field_name": "task_index", "pandas_type": "int64",
             "numpy_type": "int64", "metadata": None},
            {"name": "task", "field_name": "task", "pandas_type": "unicode",
             "numpy_type": "object", "metadata": None}],
        "creator": {"library": "pyarrow", "version": pa.__version__},
        "pandas_version": "2.2.3",
    }
    table = pa.table({"task_index": pa.array(range(len(tasks)), pa.int64()),
                      "task": pa.array(tasks, pa.string())})
    return table.replace_schema_metadata({"pandas": json.dumps(pandas_meta)})


class _Writer:
    """One v3.0 dataset under ``work``, written episode by episode (files roll over past their
    size limits); ``finish`` writes the metadata."""

    def __init__(self, work: pathlib.Path, *, fps: int, state_key: str, action_key: str,
                 state_dim: int, action_dim: int, camera_key: str, shape: tuple[int, ...],
                 codec: str, crf: int, gop: int, data_file_mb: float, video_file_mb: float) -> None:
        import pyarrow as pa

        self.work, self.fps = work, fps
        self.state_key, self.action_key, self.camera_key = state_key, action_key, camera_key
        self.dims, self.shape = (state_dim, action_dim), shape
        self.codec, self.crf, self.gop = codec, crf, gop
        self.data_bytes, self.video_bytes = data_file_mb * 1e6, video_file_mb * 1e6
        vec = lambda n: pa.list_(pa.float32(), n)  # noqa: E731 - fixed size, as HF datasets' Sequence
        self.schema = pa.schema([(state_key, vec(state_dim)), (action_key, vec(action_dim)),
                                 ("timestamp", pa.float32()), ("frame_index", pa.int64()),
                                 ("episode_index", pa.int64()), ("index", pa.int64()),
                                 ("task_index", pa.int64())])
        self.data_place, self.video_place = _Place(), _Place()
        self.data: Any = None          # pyarrow ParquetWriter of the current data file
        self.data_path = work
        self.video: Any = None         # VideoWriter of the current video file
        self.tasks: dict[str, int] = {}
        self.rows: list[dict[str, Any]] = []
        self.states: list[np.ndarray] = []
        self.actions: list[np.ndarray] = []
        self.image_stats = _ImageStats()
        self.total = 0

    def add(self, ep: dict[str, np.ndarray]) -> None:
        """Append one (checked) episode: its rows, its frames, its metadata row."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        ep_idx, T, task = len(self.rows), len(ep["states"]), str(ep["task"])
        task_index = self.tasks.setdefault(task, len(self.tasks))
        meta: dict[str, Any] = {"episode_index": ep_idx, "tasks": [task], "length": T,
                                "data/chunk_index": self.data_place.chunk,
                                "data/file_index": self.data_place.file,
                                "dataset_from_index": self.total,
                                "dataset_to_index": self.total + T}
        if self.data is None:
            self.data_path = self.work / DATA_PATH.format(chunk_index=self.data_place.chunk,
                                                          file_index=self.data_place.file)
            self.data_path.parent.mkdir(parents=True, exist_ok=True)
            self.data = pq.ParquetWriter(str(self.data_path), self.schema, compression="snappy")
        steps = np.arange(T, dtype=np.int64)
        states = np.asarray(ep["states"], np.float32)
        actions = np.asarray(ep["actions"], np.float32)
        self.data.write_table(pa.table({
            self.state_key: pa.FixedSizeListArray.from_arrays(pa.array(states.ravel()), self.dims[0]),
            self.action_key: pa.FixedSizeListArray.from_arrays(pa.array(actions.ravel()), self.dims[1]),
            "timestamp": pa.array((steps / self.fps).astype(np.float32)),
            "frame_index": pa.array(steps),
            "episode_index": pa.array(np.full(T, ep_idx, np.int64)),
            "index": pa.array(self.total + steps),
            "task_index": pa.array(np.full(T, task_index, np.int64)),
        }, schema=self.schema))  # one row group per episode
        if self.data_path.stat().st_size >= self.data_bytes:
            self.data.close()
            self.data = None
            self.data_place.advance()
        if self.shape:
            meta.update(self._add_video(ep["images"], np.asarray(ep["frame_steps"]), T))
        for key, values in ((self.state_key, states), (self.action_key, actions)):
            s = _numeric_stats(values)
            meta.update({f"stats/{key}/{k}": s[k] for k in ("min", "max", "mean", "std", "count")})
        meta["meta/episodes/chunk_index"], meta["meta/episodes/file_index"] = 0, 0
        self.rows.append(meta)
        self.states.append(states)
        self.actions.append(actions)
        self.total += T

    def _add_video(self, images: np.ndarray, frame_steps: np.ndarray, T: int) -> dict[str, Any]:
        from arvla_data.lerobot_video import VideoWriter

        if self.video is None:
            self.video = VideoWriter(self.work / VIDEO_PATH.format(
                video_key=self.camera_key, chunk_index=self.video_place.chunk,
                file_index=self.video_place.file), fps=self.fps, height=self.shape[0],
                width=self.shape[1], codec=self.codec, crf=self.crf, gop=self.gop)
        per_step = _frame_per_step(frame_steps, T)
        start = self.video.frames / self.fps
        self.video.write(images[k] for k in per_step)
        for k, count in zip(*np.unique(per_step, return_counts=True)):
            self.image_stats.add(images[k], int(count))
        key = self.camera_key
        meta = {f"videos/{key}/chunk_index": self.video_place.chunk,
                f"videos/{key}/file_index": self.video_place.file,
                f"videos/{key}/from_timestamp": start, f"videos/{key}/to_timestamp": start + T / self.fps}
        if self.video.size_bytes() >= self.video_bytes:
            self.video.close()
            self.video = None
            self.video_place.advance()
        return meta

    def close(self) -> None:
        for attr in ("data", "video"):
            if getattr(self, attr) is not None:
                getattr(self, attr).close()
                setattr(self, attr, None)

    def finish(self, joints: list[str], robot_type: str) -> None:
        """Close the files and write meta/: episodes, tasks, stats, info."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        from arvla_data.lerobot_video import video_info

        self.close()
        episodes_path = self.work / EPISODES_PATH.format(chunk_index=0, file_index=0)
        episodes_path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist(self.rows), episodes_path)
        tasks = sorted(self.tasks, key=self.tasks.__getitem__)
        pq.write_table(_tasks_table(tasks), self.work / "meta" / "tasks.parquet")
        stats: dict[str, Any] = {self.state_key: _numeric_stats(np.concatenate(self.states)),
                                 self.action_key: _numeric_stats(np.concatenate(self.actions))}
        names = joints or None
        features: dict[str, Any] = {
            self.state_key: {"dtype": "float32", "shape": [self.dims[0]], "names": names},
            self.action_key: {"dtype": "float32", "shape": [self.dims[1]], "names": names},
        }
        if self.shape:
            stats[self.camera_key] = self.image_stats.stats()
            features[self.camera_key] = {
                "dtype": "video", "shape": list(self.shape), "names": ["height", "width", "channels"],
                "info": video_info(self.codec, self.fps, self.shape[0], self.shape[1])}
        features["timestamp"] = {"dtype": "float32", "shape": [1], "names": None}
        for key in DEFAULT_FEATURES[1:]:
            features[key] = {"dtype": "int64", "shape": [1], "names": None}
        n = len(self.rows)
        info = {"codebase_version": CODEBASE_VERSION, "robot_type": robot_type or None,
                "total_episodes": n, "total_frames": self.total, "total_tasks": len(tasks),
                "chunks_size": CHUNKS_SIZE,
                "data_files_size_in_mb": max(1, int(round(self.data_bytes / 1e6))),
                "video_files_size_in_mb": max(1, int(round(self.video_bytes / 1e6))),
                "fps": self.fps, "splits": {"train": f"0:{n}"}, "data_path": DATA_PATH,
                "video_path": VIDEO_PATH if self.shape else None, "features": features}
        (self.work / "meta" / "stats.json").write_text(json.dumps(stats, indent=2), encoding="utf-8")
        (self.work / "meta" / "info.json").write_text(json.dumps(info, indent=4), encoding="utf-8")


def _check_like_first(ep: dict[str, np.ndarray], first: dict[str, Any], where: str) -> None:
    """An episode must agree with the first on rate, sizes, joint names and frames."""
    rate = float(ep["control_rate_hz"])
    if abs(rate - first["rate"]) > 1e-9:
        raise EpisodeError(f"{where}: control_rate_hz {rate:g}, the first episode's is "
                           f"{first['rate']:g}")
    dims = (ep["states"].shape[1], ep["actions"].shape[1])
    if dims != first["dims"]:
        raise EpisodeError(f"{where}: state/action sizes {dims[0]}/{dims[1]}, the first "
                           f"episode's are {first['dims'][0]}/{first['dims'][1]}")
    names = [str(j) for j in np.asarray(ep["joint_names"]).tolist()]
    if names != first["joints"]:
        raise EpisodeError(f"{where}: joint_names {names}, the first episode's are {first['joints']}")
    shape = tuple(ep["images"].shape[1:]) if "images" in ep else ()
    if shape != first["shape"]:
        have = f"frames {shape}" if shape else "no images"
        want = f"frames {first['shape']}" if first["shape"] else "no images"
        raise EpisodeError(f"{where}: {have}, the first episode has {want} (all alike or none)")


def export_lerobot(episodes: Sequence[str | os.PathLike[str]], root: str | os.PathLike[str], *,
                   camera_key: str = "observation.images.camera",
                   state_key: str = "observation.state", action_key: str = "action",
                   robot_type: str = "", codec: str = "", crf: int = 18, gop: int = 2,
                   data_file_mb: float = 100.0, video_file_mb: float = 200.0,
                   progress: bool = True) -> ExportSummary:
    """Write the episode files ``episodes`` (in that order: episode_index 0, 1, ...) as a LeRobot
    v3.0 dataset at ``root``, which must not exist yet (or be an empty directory).

    The episodes must agree on control rate (an integer fps), state / action size, joint names
    and, when they have images, frame size (even, for yuv420p); all of them or none have images.
    ``codec``: the PyAV encoder ('' = libx264 when this PyAV has it, else mpeg4), ``crf`` its
    quality (lower = closer to the frames), ``gop`` the keyframe interval.
    """
    from tqdm import tqdm

    from arvla_data.lerobot_video import pick_codec

    paths = [pathlib.Path(p) for p in episodes]
    if not paths:
        raise EpisodeError("export-lerobot: no episodes given")
    if not 0 <= crf <= 51 or gop < 1:
        raise EpisodeError(f"crf must be in 0..51 and gop >= 1, got crf {crf}, gop {gop}")
    root = pathlib.Path(root)
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise EpisodeError(f"{root} exists and is not an empty directory; choose a new one")

    ep = load_episode(paths[0])
    first = {"rate": float(ep["control_rate_hz"]),
             "dims": (ep["states"].shape[1], ep["actions"].shape[1]),
             "joints": [str(j) for j in np.asarray(ep["joint_names"]).tolist()],
             "shape": tuple(ep["images"].shape[1:]) if "images" in ep else ()}
    fps = _fps_of(first["rate"], str(paths[0]))
    if first["shape"] and (first["shape"][0] % 2 or first["shape"][1] % 2):
        raise EpisodeError(f"{paths[0]}: yuv420p video needs an even frame size, got "
                           f"{first['shape'][1]}x{first['shape'][0]}")
    codec = pick_codec(codec) if first["shape"] else ""

    work = root.parent / f".{root.name}.partial"
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    writer = _Writer(work, fps=fps, state_key=state_key, action_key=action_key,
                     state_dim=first["dims"][0], action_dim=first["dims"][1], camera_key=camera_key,
                     shape=first["shape"], codec=codec, crf=crf, gop=gop,
                     data_file_mb=data_file_mb, video_file_mb=video_file_mb)
    try:
        for i, path in enumerate(tqdm(paths, desc="episodes -> lerobot", unit="ep",
                                      disable=not progress)):
            if i:
                ep = load_episode(path)
                _check_like_first(ep, first, str(path))
            writer.add(ep)
            del ep
        writer.finish(first["joints"], robot_type)
    except BaseException:
        with contextlib.suppress(Exception):
            writer.close()
        shutil.rmtree(work, ignore_errors=True)  # nothing half-written stays behind
        raise
    if root.exists():
        root.rmdir()  # empty, checked above
    os.replace(work, root)
    return ExportSummary(root, len(paths), writer.total, sorted(writer.tasks, key=writer.tasks.get),
                         camera_key if first["shape"] else None)


def episode_files(inputs: Sequence[str]) -> list[pathlib.Path]:
    """.npz files as given; a directory stands for its *.npz episodes, sorted by name."""
    from arvla_action_expert.data import NpzEpisodeDir

    files: list[pathlib.Path] = []
    for item in inputs:
        p = pathlib.Path(item)
        if p.is_dir():
            files += NpzEpisodeDir(p).files  # EpisodeError: the one schema's error
        elif p.suffix == ".npz" and p.is_file():
            files.append(p)
        else:
            raise EpisodeError(f"{p}: neither an episode .npz file nor a directory of them")
    return files


