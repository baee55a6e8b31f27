"""The one training-episode schema (docs/CONTRACTS.md, "Episodes"): its arrays and metadata,
its checks, and its .npz files. Every producer (bag conversion, LeRobot import, the sim's
collectors) and every consumer (training, export) goes through this module.

An episode file is an uncompressed ``.npz`` (no pickle; strings as numpy unicode):
``states`` (T, state_dim) float32, ``actions`` (T, action_dim) float32 (absolute targets),
``frame_tokens`` (F, N, prefix_dim) float32, ``frame_steps`` (F,) int64 (increasing, in [0, T)),
optional ``images`` (F, H, W, 3) uint8, and ``control_rate_hz``, ``model_id``, ``joint_names``,
``task``. In memory it is either that dict of arrays or an ``Episode``.
"""

from __future__ import annotations

import os
import pathlib
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from arvla_base.fileio import atomic_save_npz, read_npz

__all__ = ["EPISODE_ARRAYS", "EPISODE_META", "Episode", "EpisodeError", "episode_metadata",
           "load_episode", "save_episode", "save_episode_npz", "validate_episode"]

EPISODE_ARRAYS = ("states", "actions", "frame_tokens", "frame_steps")
EPISODE_META = ("control_rate_hz", "model_id", "joint_names", "task")


class EpisodeError(ValueError):
    """An episode (file, array, or the bag / dataset it comes from) is malformed or cannot be
    made; the message names the episode and the field."""


def episode_metadata(control_rate_hz: float, model_id: str, joint_names: Sequence[str],
                     task: str) -> dict[str, np.ndarray]:
    """The CONTRACTS.md metadata entries of an episode. Strings are stored as numpy unicode
    arrays, so the .npz loads with allow_pickle=False."""
    return {
        "control_rate_hz": np.asarray(float(control_rate_hz), np.float64),
        "model_id": np.asarray(str(model_id)),
        "joint_names": np.asarray([str(j) for j in joint_names], dtype=np.str_),
        "task": np.asarray(str(task)),
    }


def validate_episode(ep: dict[str, np.ndarray], *, where: str = "episode") -> None:
    """Check an episode against CONTRACTS.md; EpisodeError naming the key and the shapes."""
    missing = [k for k in (*EPISODE_ARRAYS, *EPISODE_META) if k not in ep]
    if missing:
        raise EpisodeError(f"{where}: missing key(s) {missing}")
    s, a, tok, fs = (np.asarray(ep[k]) for k in EPISODE_ARRAYS)
    if s.ndim != 2 or s.shape[0] < 1:
        raise EpisodeError(f"{where}: states must be (T>=1, state_dim), got {s.shape}")
    T = s.shape[0]
    if a.ndim != 2 or a.shape[0] != T:
        raise EpisodeError(f"{where}: states {s.shape} and actions {a.shape} disagree: actions must be "
                           f"({T}, action_dim), got {a.shape}")
    if tok.ndim != 3:
        raise EpisodeError(f"{where}: frame_tokens must be (F, N, prefix_dim), got {tok.shape}")
    F = tok.shape[0]
    if fs.shape != (F,):
        raise EpisodeError(f"{where}: frame_steps must be ({F},), got {fs.shape}")
    if F and not np.issubdtype(fs.dtype, np.integer):
        raise EpisodeError(f"{where}: frame_steps must be integers, got {fs.dtype}")
    if F and (fs.min() < 0 or fs.max() >= T or np.any(np.diff(fs) <= 0)):
        raise EpisodeError(f"{where}: frame_steps must increase within [0, {T}), got "
                           f"{fs[:5].tolist()}...{fs[-3:].tolist()}")
    for key, arr in (("states", s), ("actions", a), ("frame_tokens", tok)):
        if not np.all(np.isfinite(arr)):
            raise EpisodeError(f"{where}: {key} contains NaN/inf")
    names = np.asarray(ep["joint_names"])
    if names.size and names.size != a.shape[1]:
        raise EpisodeError(f"{where}: {names.size} joint_names for action_dim {a.shape[1]}")
    if "images" in ep:
        im = np.asarray(ep["images"])
        if im.ndim != 4 or im.shape[0] != F or im.shape[3] != 3 or im.dtype != np.uint8:
            raise EpisodeError(f"{where}: images {im.shape} {im.dtype} must be (F={F}, H, W, 3) "
                               "uint8")
    if float(ep["control_rate_hz"]) <= 0:
        raise EpisodeError(f"{where}: control_rate_hz must be > 0, got {ep['control_rate_hz']}")


@dataclass
class Episode:
    states: np.ndarray         # (T, state_dim) float32
    actions: np.ndarray        # (T, action_dim) float32, absolute targets
    frame_tokens: np.ndarray   # (F, N, prefix_dim) float32
    frame_steps: np.ndarray    # (F,) int64, capture step of each frame, increasing, in [0, T)
    control_rate_hz: float = 20.0
    model_id: str = ""
    joint_names: list[str] = field(default_factory=list)
    task: str = ""
    images: np.ndarray | None = None  # (F, H, W, 3) uint8
    name: str = ""

    def __post_init__(self) -> None:
        self.states = np.asarray(self.states, np.float32)
        self.actions = np.asarray(self.actions, np.float32)
        self.frame_tokens = np.asarray(self.frame_tokens, np.float32)
        self.frame_steps = np.asarray(self.frame_steps, np.int64)
        self.validate()

    def validate(self) -> None:
        """The checks of ``validate_episode`` (one schema, one set of checks)."""
        validate_episode(self.arrays(), where=f"episode {self.name or '<unnamed>'}")

    def arrays(self) -> dict[str, np.ndarray]:
        """The episode as the arrays of its file (docs/CONTRACTS.md)."""
        out = {"states": self.states, "actions": self.actions, "frame_tokens": self.frame_tokens,
               "frame_steps": self.frame_steps,
               **episode_metadata(self.control_rate_hz, self.model_id, self.joint_names, self.task)}
        if self.images is not None:
            out["images"] = self.images
        return out

    @property
    def length(self) -> int:
        return int(self.states.shape[0])


def save_episode(path: str | os.PathLike[str], episode: dict[str, np.ndarray]) -> pathlib.Path:
    """Validate and write ``episode`` as an uncompressed .npz, atomically (temp file in the same
    directory + os.replace): a crash never leaves a half-written episode under the final name."""
    path = pathlib.Path(path)
    if path.suffix != ".npz":
        raise EpisodeError(f"episode files end in .npz, got {path}")
    validate_episode(episode, where=str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_save_npz(path, {k: np.asarray(v) for k, v in episode.items()})


def load_episode(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Read an episode .npz (no pickle) and validate it."""
    ep = read_npz(path, EpisodeError, "episode file")
    validate_episode(ep, where=str(path))
    return ep


def save_episode_npz(path: str | pathlib.Path, ep: Episode) -> None:
    """Write one episode as an uncompressed ``.npz`` (no pickled objects, strings as unicode).

    Atomic: written to a hidden temp file in the same directory (not matching ``*.npz``, so a
    dataset listing never sees it), fsynced, then renamed; a writer killed mid-write leaves the
    previous file intact and no partial file under the final name.
    """
    atomic_save_npz(path, ep.arrays())
