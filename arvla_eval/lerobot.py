"""Import LeRobot-format datasets as arvla training episodes (docs/CONTRACTS.md, "Episodes").

LeRobot is where most public robot-learning datasets live (and where the AR-VLA authors' own
specialist code runs), so being able to train the expert on them without LeRobot installed is
worth a small reader. The layout read here (LeRobot v2.x, and v3.0's multi-episode files):

    meta/info.json                       fps, features (names of state/action dims), robot_type
    meta/tasks.jsonl | meta/tasks.parquet   task_index -> task text
    data/chunk-*/episode_*.parquet       one row per frame: episode_index, frame_index,
    data/chunk-*/file-*.parquet            observation.state, action, task_index, [images]

Rows are grouped by ``episode_index`` (so files holding several episodes work too) and ordered
by ``frame_index``. The dataset's ``fps`` becomes ``control_rate_hz`` (one row = one control
step). Image features stored in the parquet files (dtype ``image``: PNG/JPEG bytes or a path)
can be kept as the episode's frames, one per step; video features need a video decoder, which
is not a dependency here, and are refused with a clear message.
"""

from __future__ import annotations

import io
import json
import pathlib
from typing import Any, Iterator, Sequence

import numpy as np

from arvla_eval.episodes import EpisodeError, episode_metadata, save_episode, validate_episode

__all__ = ["LeRobotDataset", "import_lerobot"]


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
    """A LeRobot dataset on disk: metadata plus an iterator over episodes."""

    def __init__(self, root: str | pathlib.Path, *, state_key: str = "observation.state",
                 action_key: str = "action", image_key: str | None = None) -> None:
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
        self.fps = float(fps)
        self.features: dict[str, Any] = self.info.get("features") or {}
        self.state_key, self.action_key, self.image_key = state_key, action_key, image_key
        for key in (state_key, action_key):
            if self.features and key not in self.features:
                raise EpisodeError(f"{info_path}: no feature {key!r}; features: "
                                   f"{sorted(self.features)}")
        if image_key is not None:
            spec = self.features.get(image_key)
            if spec is None:
                raise EpisodeError(f"{info_path}: no image feature {image_key!r}; features: "
                                   f"{sorted(self.features)}")
            if spec.get("dtype") == "video":
                raise EpisodeError(f"{info_path}: {image_key!r} is stored as video; decoding video "
                                   "is not supported (no video decoder dependency) -- import "
                                   "without images or convert the dataset to image features")
        self.files = sorted((self.root / "data").glob("chunk-*/*.parquet"))
        if not self.files:
            raise EpisodeError(f"{self.root}: no data/chunk-*/*.parquet files")
        self.tasks = self._read_tasks()

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
        """Yield (episode_index, episode dict) in episode order."""
        import pyarrow.parquet as pq

        wanted = set(only) if only is not None else None
        found: set[int] = set()
        for file in self.files:
            try:
                table = pq.read_table(file)
            except Exception as err:
                raise EpisodeError(f"cannot read {file}: {err}") from err
            cols = table.column_names
            need = ["episode_index", "frame_index", self.state_key, self.action_key]
            if self.image_key:
                need.append(self.image_key)
            missing = [c for c in need if c not in cols]
            if missing:
                raise EpisodeError(f"{file}: missing column(s) {missing}; columns: {cols}")
            ep_col = np.asarray(table.column("episode_index").to_numpy(), np.int64)
            for ep_idx in np.unique(ep_col):
                if wanted is not None and int(ep_idx) not in wanted:
                    continue
                if int(ep_idx) in found:
                    raise EpisodeError(f"{file}: episode {ep_idx} is split across files")
                found.add(int(ep_idx))
                rows = np.nonzero(ep_col == ep_idx)[0]
                yield int(ep_idx), self._episode(file, table.take(rows), int(ep_idx))
        if wanted is not None and wanted - found:
            raise EpisodeError(f"{self.root}: no episode(s) {sorted(wanted - found)} in the data")

    def _episode(self, file: pathlib.Path, table: Any, ep_idx: int) -> dict[str, np.ndarray]:
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
        if self.image_key:
            cells = table.column(self.image_key).to_pylist()
            episode["images"] = np.stack([self._image(cells[i], where, i) for i in order])
            episode["frame_steps"] = np.arange(T, dtype=np.int64)
            episode["frame_tokens"] = np.zeros((T, 0, 0), np.float32)  # computed later
        else:
            episode["frame_steps"] = np.zeros((0,), np.int64)
            episode["frame_tokens"] = np.zeros((0, 0, 0), np.float32)
        task = ""
        if "task_index" in table.column_names:
            ti = int(table.column("task_index").to_numpy()[order[0]])
            task = self.tasks.get(ti, "")
        episode.update(episode_metadata(self.fps, "", self.joint_names(states.shape[1]), task))
        episode["source"] = np.asarray(f"{self.root}#episode_{ep_idx}")
        validate_episode(episode, where=where)
        return episode

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
                   progress: bool = True) -> list[pathlib.Path]:
    """Convert a LeRobot dataset into ``<output_dir>/episode_NNNNNN.npz`` files."""
    from tqdm import tqdm

    ds = LeRobotDataset(root, state_key=state_key, action_key=action_key, image_key=image_key)
    total = len(episodes) if episodes is not None else ds.info.get("total_episodes")
    out = pathlib.Path(output_dir)
    written = []
    for ep_idx, ep in tqdm(ds.episodes(episodes), total=total, desc="lerobot -> episodes",
                           unit="ep", disable=not progress):
        written.append(save_episode(out / f"episode_{ep_idx:06d}.npz", ep))
    return written


def cli_main(argv: list[str]) -> int:
    """``arvla import-lerobot DATASET_DIR --output DIR [--image-key K] [--episodes 0 1 ...]``"""
    import argparse
    import sys

    parser = argparse.ArgumentParser(prog="arvla import-lerobot",
                                     description="Convert a LeRobot-format dataset (meta/info.json "
                                                 "+ data/chunk-*/*.parquet) to arvla episodes.")
    parser.add_argument("root", help="dataset directory (holds meta/ and data/)")
    parser.add_argument("--output", "-o", required=True)
    parser.add_argument("--image-key", help="image feature to keep as frames, e.g. "
                                            "observation.images.top")
    parser.add_argument("--state-key", default="observation.state")
    parser.add_argument("--action-key", default="action")
    parser.add_argument("--episodes", type=int, nargs="+", help="only these episode indices")
    args = parser.parse_args(argv)
    try:
        written = import_lerobot(args.root, args.output, episodes=args.episodes,
                                 image_key=args.image_key, state_key=args.state_key,
                                 action_key=args.action_key)
    except EpisodeError as err:
        print(f"arvla import-lerobot: {err}", file=sys.stderr)
        return 1
    for p in written:
        print(p)
    return 0
