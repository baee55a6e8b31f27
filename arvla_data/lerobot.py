"""Import LeRobot-format datasets as arvla training episodes (docs/CONTRACTS.md, "Episodes").

LeRobot is where most public robot-learning datasets live (and where the AR-VLA authors' own
specialist code runs), so being able to train the expert on them without LeRobot installed is
worth a small reader. The layouts read here (LeRobot v2.x, and v3.0's multi-episode files):

    meta/info.json                        codebase_version, fps, features, data_path, video_path
    meta/tasks.jsonl | meta/tasks.parquet    task_index -> task text
    data/chunk-*/episode_*.parquet  (v2)  one row per frame: episode_index, frame_index,
    data/chunk-*/file-*.parquet     (v3)    timestamp, observation.state, action, task_index, [images]
    videos/chunk-XXX/<key>/episode_XXXXXX.mp4   (v2.x: one MP4 per episode and camera)
    videos/<key>/chunk-XXX/file-XXX.mp4         (v3.0: episodes one after another in a file,
    meta/episodes/chunk-*/file-*.parquet         each at videos/<key>/from_timestamp .. to_timestamp)

Rows are grouped by ``episode_index`` (so files holding several episodes work too) and ordered
by ``frame_index``. The dataset's ``fps`` becomes ``control_rate_hz`` (one row = one control
step). One camera (``image_key``) becomes the episode's frames: an image feature (PNG/JPEG bytes
or a path in the parquet) or a video feature, decoded with PyAV frame-accurately at
``from_timestamp + timestamp`` (arvla_data.lerobot_video.decode_at: the frame within 1e-4 s of
that time, as LeRobot's loader demands, or an error naming the episode and key). One camera
because the perception node encodes one camera topic: the expert must be trained on the prefixes
it will see.

With a perception configuration, ``import_lerobot`` computes the frames' prefixes offline with
the perception node's backbone, batched, the episode's task text as the instruction -- what
``arvla demo`` does with its recorded frames (arvla_data.prefixes.OfflinePrefixes). Episodes
stream one at a time, and frames go through the backbone a batch at a time, so memory holds one
episode's states and tokens (and its frames only when they are kept).
"""

from __future__ import annotations

import io
import json
import pathlib
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from arvla_base.episode import EpisodeError, episode_metadata, save_episode, validate_episode

__all__ = ["LeRobotDataset", "import_lerobot"]

Frames = Iterator[np.ndarray]


def _names_of(feature: dict[str, Any] | None, dim: int) -> list[str]:
    """Dimension names from a LeRobot feature spec (list, nested list or {"motors": [...]})."""
    names = (feature or {}).get("names")
    if isinstance(names, dict):
        names = next(iter(names.values()), None) if len(names) == 1 else None
    if isinstance(names, list) and names and isinstance(names[0], list):
        names = names[0] if len(names) == 1 else None
    if isinstance(names, list) and len(names) == dim and all(isinstance(n, str) for n in names):
        return list(names)
    return []


class LeRobotDataset:
    """A LeRobot dataset on disk: metadata plus an iterator over episodes.

    ``image_key``: the camera feature (dtype image or video) whose frames the episodes get,
    one every ``frame_stride`` steps; ``tolerance_s``: how far a video frame's time may be from
    the row's (LeRobot's loader: 1e-4 s).
    """

    def __init__(self, root: str | pathlib.Path, *, state_key: str = "observation.state",
                 action_key: str = "action", image_key: str | None = None, frame_stride: int = 1,
                 tolerance_s: float = 1e-4) -> None:
        self.root = pathlib.Path(root)
        info_path = self.root / "meta" / "info.json"
        if not info_path.is_file():
            raise EpisodeError(f"{self.root} is not a LeRobot dataset: {info_path} not found")
        try:
            self.info: dict[str, Any] = json.loads(info_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise EpisodeError(f"{info_path}: not valid JSON: {err}") from err
        fps = self.info.get("fps")
        if not isinstance(fps, (int, float)) or fps <= 0:
            raise EpisodeError(f"{info_path}: 'fps' must be a number > 0, got {fps!r}")
        if frame_stride < 1:
            raise EpisodeError(f"frame_stride must be >= 1, got {frame_stride}")
        if not tolerance_s > 0:
            raise EpisodeError(f"tolerance_s must be > 0, got {tolerance_s}")
        self.fps = float(fps)
        self.version = str(self.info.get("codebase_version") or "")
        # v3.0 keeps several episodes per file and the per-episode metadata in meta/episodes/
        self.multi_episode_files = (self.version.startswith("v3") or
                                    (not self.version and (self.root / "meta" / "episodes").is_dir()))
        self.features: dict[str, Any] = self.info.get("features") or {}
        self.state_key, self.action_key, self.image_key = state_key, action_key, image_key
        self.frame_stride, self.tolerance_s = int(frame_stride), float(tolerance_s)
        for key in (state_key, action_key):
            if self.features and key not in self.features:
                raise EpisodeError(f"{info_path}: no feature {key!r}; features: "
                                   f"{sorted(self.features)}")
        self.video_key: str | None = None
        if image_key is not None:
            spec = self.features.get(image_key)
            if spec is None:
                raise EpisodeError(f"{info_path}: no image feature {image_key!r}; camera features: "
                                   f"{self.camera_keys}")
            if spec.get("dtype") not in ("image", "video"):
                raise EpisodeError(f"{info_path}: feature {image_key!r} has dtype "
                                   f"{spec.get('dtype')!r}, not image or video; camera features: "
                                   f"{self.camera_keys}")
            if spec.get("dtype") == "video":
                if not isinstance(self.info.get("video_path"), str):
                    raise EpisodeError(f"{info_path}: {image_key!r} is a video feature but "
                                       f"'video_path' is {self.info.get('video_path')!r}")
                self.video_key = image_key
        self.files = sorted((self.root / "data").glob("chunk-*/*.parquet"))
        if not self.files:
            raise EpisodeError(f"{self.root}: no data/chunk-*/*.parquet files")
        self.tasks = self._read_tasks()
        self._spans: dict[int, tuple[pathlib.Path, float, float]] | None = None

    @property
    def camera_keys(self) -> list[str]:
        return sorted(k for k, f in self.features.items()
                      if isinstance(f, dict) and f.get("dtype") in ("image", "video"))

    def _read_tasks(self) -> dict[int, str]:
        meta = self.root / "meta"
        tasks: dict[int, str] = {}
        if (meta / "tasks.jsonl").is_file():
            for i, line in enumerate((meta / "tasks.jsonl").read_text(encoding="utf-8").splitlines()):
                if line.strip():
                    try:
                        row = json.loads(line)
                        tasks[int(row["task_index"])] = str(row["task"])
                    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
                        raise EpisodeError(f"{meta / 'tasks.jsonl'} line {i + 1}: {err}") from err
        elif (meta / "tasks.parquet").is_file():  # v3.0: index = task text, column task_index
            import pyarrow.parquet as pq

            table = pq.read_table(meta / "tasks.parquet")
            cols = table.column_names
            text_col = "task" if "task" in cols else next((c for c in cols if c != "task_index"), None)
            if "task_index" in cols and text_col:
                for idx, text in zip(table.column("task_index").to_pylist(),
                                     table.column(text_col).to_pylist()):
                    tasks[int(idx)] = str(text)
        return tasks

    def joint_names(self, dim: int) -> list[str]:
        return _names_of(self.features.get(self.state_key), dim)

    def episodes(self, only: Sequence[int] | None = None) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
        """Yield (episode_index, episode dict) in episode order, frames (if any) as ``images``."""
        for ep_idx, episode, frames in self.stream(only):
            if frames is not None:
                episode["images"] = np.stack(list(frames))
                validate_episode(episode, where=f"{self.root} episode {ep_idx}")
            yield ep_idx, episode

    def stream(self, only: Sequence[int] | None = None
               ) -> Iterator[tuple[int, dict[str, np.ndarray], Frames | None]]:
        """Yield (episode_index, episode dict without images, its frames) in episode order.

        ``frames`` yields the (H, W, 3) uint8 RGB frame of each ``frame_steps`` entry, decoded
        lazily (None without an image key); the episode's ``frame_tokens`` are (F, 0, 0) until
        a backbone fills them.
        """
        import pyarrow.parquet as pq

        wanted = set(only) if only is not None else None
        found: set[int] = set()
        need = ["episode_index", "frame_index", self.state_key, self.action_key]
        if self.image_key and not self.video_key:
            need.append(self.image_key)
        for file in self.files:
            try:
                cols = pq.read_schema(file).names
                missing = [c for c in need if c not in cols]
                if missing:
                    raise EpisodeError(f"{file}: missing column(s) {missing}; columns: {cols}")
                # only the columns used: a file's other cameras can be most of its bytes
                table = pq.read_table(file, columns=need + [c for c in ("timestamp", "task_index")
                                                            if c in cols])
            except EpisodeError:
                raise
            except Exception as err:
                raise EpisodeError(f"cannot read {file}: {err}") from err
            ep_col = np.asarray(table.column("episode_index").to_numpy(), np.int64)
            for ep_idx in np.unique(ep_col):
                if wanted is not None and int(ep_idx) not in wanted:
                    continue
                if int(ep_idx) in found:
                    raise EpisodeError(f"{file}: episode {ep_idx} is split across files")
                found.add(int(ep_idx))
                rows = np.nonzero(ep_col == ep_idx)[0]
                yield (int(ep_idx), *self._episode(file, table.take(rows), int(ep_idx)))
        if wanted is not None and wanted - found:
            raise EpisodeError(f"{self.root}: no episode(s) {sorted(wanted - found)} in the data")

    def _episode(self, file: pathlib.Path, table: Any, ep_idx: int
                 ) -> tuple[dict[str, np.ndarray], Frames | None]:
        where = f"{file} episode {ep_idx}"
        order = np.argsort(np.asarray(table.column("frame_index").to_numpy()), kind="stable")
        frames = np.asarray(table.column("frame_index").to_numpy())[order]
        if np.any(np.diff(frames) != 1):
            gap = int(np.argmax(np.diff(frames) != 1))
            raise EpisodeError(f"{where}: frame_index is not contiguous (jumps from {frames[gap]} "
                               f"to {frames[gap + 1]})")
        states = self._matrix(table, self.state_key, where)[order]
        actions = self._matrix(table, self.action_key, where)[order]
        T = len(states)
        episode: dict[str, np.ndarray] = {"states": states, "actions": actions}
        steps = np.arange(0, T, self.frame_stride, dtype=np.int64) if self.image_key else \
            np.zeros((0,), np.int64)
        episode["frame_steps"] = steps
        episode["frame_tokens"] = np.zeros((len(steps), 0, 0), np.float32)  # computed later
        task = ""
        if "task_index" in table.column_names:
            ti = int(table.column("task_index").to_numpy()[order[0]])
            task = self.tasks.get(ti, "")
        episode.update(episode_metadata(self.fps, "", self.joint_names(states.shape[1]), task))
        episode["source"] = np.asarray(f"{self.root}#episode_{ep_idx}")
        validate_episode(episode, where=where)
        stream: Frames | None = None
        if self.video_key:
            if "timestamp" in table.column_names:
                times = np.asarray(table.column("timestamp").to_numpy(), np.float64)[order]
            else:
                times = frames / self.fps
            stream = self._video_frames(ep_idx, times, steps)
        elif self.image_key:
            cells = table.column(self.image_key).to_pylist()
            stream = (self._image(cells[order[s]], where, int(s)) for s in steps)
        return episode, stream

    # ---------------------------------------------------------------------------- video

    def _video_frames(self, ep_idx: int, times: np.ndarray, steps: np.ndarray) -> Frames:
        """The episode's frames at ``steps`` from its video (checks first, decodes lazily)."""
        from arvla_data.lerobot_video import decode_at

        key = self.video_key
        assert key is not None
        who = f"{self.root} episode {ep_idx} key {key!r}"
        period = 1.0 / self.fps
        if len(times) > 1 and np.any(np.abs(np.diff(times) - period) > self.tolerance_s):
            i = int(np.argmax(np.abs(np.diff(times) - period) > self.tolerance_s))
            raise EpisodeError(f"{who}: timestamps step {times[i + 1] - times[i]:.6f} s at row "
                               f"{i + 1}, but fps {self.fps:g} means {period:.6f} s (wrong fps in "
                               "meta/info.json?)")
        path, start, end = self._video_span(ep_idx, who)
        at = start + times[steps]
        if at.size and (at[0] < start - self.tolerance_s or at[-1] > end - period + self.tolerance_s):
            bad = at[0] if at[0] < start - self.tolerance_s else at[-1]
            raise EpisodeError(f"{who}: timestamp {bad - start:.4f} s ({bad:.4f} s in {path}) is "
                               f"outside the episode's video span {start:.4f}..{end:.4f} s")
        return (frame for _, frame in decode_at(path, at, fps=self.fps,
                                                tolerance_s=self.tolerance_s, where=who))

    def _video_span(self, ep_idx: int, who: str) -> tuple[pathlib.Path, float, float]:
        """(file, from_timestamp, to_timestamp) of the episode in its video; v2.x: its own file,
        from 0 to the end."""
        template = str(self.info["video_path"])
        key = self.video_key
        if not self.multi_episode_files:
            chunk = ep_idx // int(self.info.get("chunks_size") or 1000)
            try:
                rel = template.format(episode_chunk=chunk, episode_index=ep_idx, video_key=key,
                                      chunk_index=chunk, file_index=ep_idx)
            except (KeyError, IndexError, ValueError) as err:
                raise EpisodeError(f"{who}: info.json video_path {template!r} does not format: "
                                   f"{err}") from err
            return self.root / rel, 0.0, float("inf")
        if self._spans is None:
            self._spans = self._read_spans(template)
        if ep_idx not in self._spans:
            raise EpisodeError(f"{who}: meta/episodes has no entry for episode {ep_idx}")
        return self._spans[ep_idx]

    def _read_spans(self, template: str) -> dict[int, tuple[pathlib.Path, float, float]]:
        import pyarrow.parquet as pq

        key = self.video_key
        files = sorted((self.root / "meta" / "episodes").glob("chunk-*/*.parquet"))
        if not files:
            raise EpisodeError(f"{self.root}: v3.0 video {key!r} needs meta/episodes/chunk-*/*.parquet "
                               "(the episodes' places in the video files); none found")
        cols = ["episode_index"] + [f"videos/{key}/{c}" for c in
                                    ("chunk_index", "file_index", "from_timestamp", "to_timestamp")]
        spans: dict[int, tuple[pathlib.Path, float, float]] = {}
        for file in files:
            try:
                missing = [c for c in cols if c not in pq.read_schema(file).names]
                if missing:
                    raise EpisodeError(f"{file}: no column(s) {missing} for video {key!r}")
                table = pq.read_table(file, columns=cols).to_pydict()
            except EpisodeError:
                raise
            except Exception as err:
                raise EpisodeError(f"cannot read {file}: {err}") from err
            for ep, chunk, fidx, start, end in zip(*(table[c] for c in cols)):
                try:
                    rel = template.format(video_key=key, chunk_index=int(chunk), file_index=int(fidx),
                                          episode_chunk=int(chunk), episode_index=int(ep))
                except (KeyError, IndexError, ValueError) as err:
                    raise EpisodeError(f"{self.root}: info.json video_path {template!r} does not "
                                       f"format: {err}") from err
                spans[int(ep)] = (self.root / rel, float(start), float(end))
        return spans

    # ---------------------------------------------------------------------------- parquet cells

    @staticmethod
    def _matrix(table: Any, key: str, where: str) -> np.ndarray:
        col = table.column(key).combine_chunks()
        n = len(col)
        try:
            flat = np.asarray(col.flatten().to_numpy(zero_copy_only=False), np.float32)
        except Exception as err:
            raise EpisodeError(f"{where}: column {key!r} is not a list of numbers ({col.type})") from err
        if n == 0 or flat.size % n:
            raise EpisodeError(f"{where}: column {key!r} rows have different lengths "
                               f"({flat.size} values over {n} rows)")
        lengths = np.asarray(col.value_lengths().to_numpy(zero_copy_only=False)) \
            if hasattr(col, "value_lengths") else None
        if lengths is not None and np.any(lengths != lengths[0]):
            raise EpisodeError(f"{where}: column {key!r} rows have different lengths "
                               f"{sorted(set(lengths.tolist()))}")
        return flat.reshape(n, flat.size // n)

    def _image(self, cell: Any, where: str, row: int) -> np.ndarray:
        from PIL import Image

        data = None
        if isinstance(cell, dict):
            data = cell.get("bytes")
            if data is None and cell.get("path"):
                path = pathlib.Path(cell["path"])
                path = path if path.is_absolute() else self.root / path
                if not path.is_file():
                    raise EpisodeError(f"{where} row {row}: image file {path} not found")
                data = path.read_bytes()
        elif isinstance(cell, (bytes, bytearray)):
            data = cell
        if data is None:
            raise EpisodeError(f"{where} row {row}: image cell holds neither bytes nor a path")
        try:
            with Image.open(io.BytesIO(data)) as img:
                return np.asarray(img.convert("RGB"), np.uint8)
        except Exception as err:
            raise EpisodeError(f"{where} row {row}: image does not decode: {err}") from err


def import_lerobot(root: str | pathlib.Path, output_dir: str | pathlib.Path, *,
                   episodes: Sequence[int] | None = None, image_key: str | None = None,
                   state_key: str = "observation.state", action_key: str = "action",
                   perception: Mapping[str, Any] | None = None, keep_images: bool | None = None,
                   frame_stride: int = 1, batch_size: int = 32, tolerance_s: float = 1e-4,
                   joint_names: Sequence[str] | None = None,
                   progress: bool = True) -> list[pathlib.Path]:
    """Convert a LeRobot dataset into ``<output_dir>/episode_NNNNNN.npz`` files.

    ``perception``: perception node parameters (PerceptionConfig keys, unset ones at their
    defaults); given, every frame of ``image_key`` is encoded into ``frame_tokens`` by that
    backbone, ``batch_size`` frames at a time, the episode's task as the instruction, and
    ``model_id`` is set. Without it the tokens stay (F, 0, 0). ``keep_images``: store the frames
    as ``images`` (default: only when no prefixes are computed). ``joint_names``: the names
    of the state/action dimensions, in order, when the dataset's (feature ``names``) are not
    the controller's joint names the expert will command (None: the dataset's).
    """
    from tqdm import tqdm

    if perception is not None and image_key is None:
        raise EpisodeError("prefixes need frames: give the camera feature (image_key)")
    if batch_size < 1:
        raise EpisodeError(f"batch_size must be >= 1, got {batch_size}")
    keep = (perception is None) if keep_images is None else bool(keep_images)
    ds = LeRobotDataset(root, state_key=state_key, action_key=action_key, image_key=image_key,
                        frame_stride=frame_stride, tolerance_s=tolerance_s)
    encoder = None
    if perception is not None:
        from arvla_data.prefixes import OfflinePrefixes

        encoder = OfflinePrefixes(perception, instruction="")
    total = len(episodes) if episodes is not None else ds.info.get("total_episodes")
    out = pathlib.Path(output_dir)
    written = []
    bar = tqdm(ds.stream(episodes), total=total, desc="lerobot -> episodes", unit="ep",
               disable=not progress)
    n_frames = 0
    for ep_idx, ep, frames in bar:
        if joint_names is not None:
            if len(joint_names) != ep["states"].shape[1]:
                raise EpisodeError(f"{len(joint_names)} joint names given for the dataset's "
                                   f"{ep['states'].shape[1]} state dimensions")
            ep["joint_names"] = np.asarray([str(j) for j in joint_names], dtype=np.str_)
        if frames is not None:
            images: list[np.ndarray] = []
            tokens: list[np.ndarray] = []
            batch: list[np.ndarray] = []
            task = str(ep["task"])
            for frame in frames:
                if keep:
                    images.append(frame)
                if encoder is not None:
                    batch.append(frame)
                    if len(batch) == batch_size:
                        tokens.append(encoder.backbone.encode_batch(batch, task, batch_size))
                        batch = []
                n_frames += 1
                bar.set_postfix(frames=n_frames, refresh=False)
            if encoder is not None:
                if batch:
                    tokens.append(encoder.backbone.encode_batch(batch, task, batch_size))
                ep["frame_tokens"] = np.concatenate(tokens)
                ep["model_id"] = np.asarray(encoder.backbone.model_id)
            if keep:
                ep["images"] = np.stack(images)
        written.append(save_episode(out / f"episode_{ep_idx:06d}.npz", ep))
    return written


