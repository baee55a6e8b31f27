"""Episodes (the format in docs/CONTRACTS.md), episode sources, and training samples.

An *episode source* is anything with ``len()`` and ``[i] -> Episode``: a directory of ``.npz``
files today, rosbag conversions or sim recorders later. Samples for the two training stages are
built from episodes here, so the trainer never looks at raw arrays:

- stage 1 (kinematic syntax): a window of L = H + C consecutive steps, no prefix;
- stage 2 (cross-modal alignment, as in the authors' code): a frame captured at step ``c``, a
  sampled delay ``d`` (``reanchor.sample_staleness``), H history steps ``u-H .. u-1`` that do
  NOT see the prefix and C chunk steps ``u .. u+C-1`` that do, with ``u = c + d``. The chunk
  tokens therefore see staleness ``d .. d+C-1``. The history tokens' keys were computed
  WITHOUT a prefix, which the KV cache at inference never does (there they saw the prefix of
  their own step); hence
- stage 2, ``prefix_mode: stream`` (the demo's): a window of H + C steps in which every step
  sees the newest frame that had arrived by then (one sampled delay per sample, frames dropped
  at random), the exact computation of ``ExpertPolicy`` -- see ``_stream_batch``.

Targets are absolute actions, or ``action - state`` with ``delta_actions``; both normalised with
stats fit on the training episodes. The "previous action" input of step t is the normalised
target of step t-1 (zeros at the episode start, as ``ExpertPolicy.reset`` does).
"""

from __future__ import annotations

import dataclasses
import pathlib
from dataclasses import dataclass
from typing import Iterator, Protocol, Sequence

import numpy as np
import torch

from arvla_base.episode import EPISODE_META, Episode, EpisodeError, save_episode_npz
from arvla_action_expert.normalize import Normalizer
from arvla_action_expert.reanchor import sample_staleness

__all__ = ["Episode", "EpisodeError", "EpisodeSource", "InMemoryEpisodes", "NpzEpisodeDir",
           "SampleSpec", "SampleBuilder", "save_episode_npz", "synthetic_episodes"]


class EpisodeSource(Protocol):
    """What the trainer needs from a data source; plug new sources in by implementing this."""

    def __len__(self) -> int: ...
    def __getitem__(self, i: int) -> Episode: ...


class InMemoryEpisodes:
    def __init__(self, episodes: Sequence[Episode]):
        self._episodes = list(episodes)

    def __len__(self) -> int:
        return len(self._episodes)

    def __getitem__(self, i: int) -> Episode:
        return self._episodes[i]

    def __iter__(self) -> Iterator[Episode]:
        return iter(self._episodes)


def _is_partial(path: pathlib.Path) -> bool:
    """Temp files of an interrupted atomic write (hidden, as every arvla writer names them, or
    ``*.tmp.*``, as older arvla_sim collectors did): never episodes, even named ``*.npz``."""
    return path.name.startswith(".") or ".tmp." in path.name


class NpzEpisodeDir:
    """Every ``*.npz`` in a directory (sorted by name), loaded lazily with pickle disabled."""

    def __init__(self, root: str | pathlib.Path):
        self.root = pathlib.Path(root)
        if not self.root.is_dir():
            raise EpisodeError(f"episode directory not found: {self.root}")
        self.files = sorted(p for p in self.root.glob("*.npz") if not _is_partial(p))
        if not self.files:
            raise EpisodeError(f"{self.root}: no .npz episodes")

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> Episode:
        path = self.files[i]
        try:
            with np.load(path, allow_pickle=False) as z:
                missing = [k for k in ("states", "actions", "frame_tokens", "frame_steps")
                           if k not in z.files]
                if missing:
                    raise EpisodeError(f"episode {path}: missing arrays {missing}")
                kw = {k: z[k] for k in ("states", "actions", "frame_tokens", "frame_steps")}
                if "images" in z.files:
                    kw["images"] = z["images"]
                meta = {k: z[k] for k in EPISODE_META if k in z.files}
        except (OSError, ValueError, EOFError) as err:
            if isinstance(err, EpisodeError):
                raise
            raise EpisodeError(f"episode {path}: unreadable ({err})") from err
        if "control_rate_hz" in meta:
            kw["control_rate_hz"] = float(meta["control_rate_hz"])
        for k in ("model_id", "task"):
            if k in meta:
                kw[k] = str(meta[k])
        if "joint_names" in meta:
            kw["joint_names"] = [str(s) for s in meta["joint_names"].tolist()]
        return Episode(name=path.name, **kw)


# --------------------------------------------------------------------------------------------
# Synthetic episodes: the goal is only visible in the frame tokens


def synthetic_episodes(n: int, *, steps: int = 64, state_dim: int = 2, prefix_dim: int = 8,
                       n_tokens: int = 4, frame_every: int = 8, n_goals: int = 4,
                       gain: float = 0.25, noise: float = 0.01, control_rate_hz: float = 20.0,
                       seed: int = 0, goal_seed: int = 0) -> list[Episode]:
    """Smooth reaching episodes whose goal changes exactly when a frame is captured.

    Each frame (every ``frame_every`` steps) may switch the goal to another of ``n_goals`` fixed
    points; token 0 of the frame carries the current goal as a one-hot (other tokens are noise).
    The arm follows ``s' = s + gain (g - s) + noise`` and the action is the next state. Right
    after a switch, the state history still points at the old goal, so only a model that
    reads the prefix can predict the turn: stage 2 must beat stage 1 there.
    The goal positions depend only on ``goal_seed``, so episodes of different ``seed`` (train /
    validation) share the meaning of the one-hot.
    """
    if prefix_dim < n_goals:
        raise ValueError(f"prefix_dim {prefix_dim} must be >= n_goals {n_goals}")
    goals = np.random.default_rng(goal_seed).uniform(-1, 1, size=(n_goals, state_dim)).astype(
        np.float32)
    rng = np.random.default_rng(seed)
    episodes = []
    for e in range(n):
        frame_steps = np.arange(0, steps, frame_every, dtype=np.int64)
        s = rng.uniform(-0.2, 0.2, size=state_dim).astype(np.float32)
        goal = int(rng.integers(n_goals))
        states = np.zeros((steps, state_dim), np.float32)
        actions = np.zeros((steps, state_dim), np.float32)
        tokens = rng.normal(0, 0.3, size=(len(frame_steps), n_tokens, prefix_dim)).astype(
            np.float32)
        f = 0
        for t in range(steps):
            if f < len(frame_steps) and frame_steps[f] == t:
                if t > 0 and rng.random() < 0.75:
                    goal = int((goal + rng.integers(1, n_goals)) % n_goals)
                tokens[f, 0] = 0.0
                tokens[f, 0, goal] = 2.0
                f += 1
            states[t] = s
            s = (s + gain * (goals[goal] - s) + rng.normal(0, noise, state_dim)).astype(np.float32)
            actions[t] = s
        episodes.append(Episode(states, actions, tokens, frame_steps,
                                control_rate_hz=control_rate_hz, model_id="synthetic",
                                joint_names=[f"j{i}" for i in range(state_dim)],
                                task="reach the goal shown in the frame", name=f"synthetic_{e}"))
    return episodes


# --------------------------------------------------------------------------------------------
# Training samples


@dataclass
class SampleSpec:
    history: int          # H steps before the chunk (no prefix)
    chunk: int            # C steps that see the prefix
    max_staleness: int    # delays d in [0, max_staleness]
    aux_chunk: int = 0    # targets for the auxiliary head, from the capture step on
    prefix_mode: str = "chunk"   # "chunk": paper-style samples; "stream": as the cache runs
    frame_drop: float = 0.0      # stream: P(a frame never arrives), for longer staleness


SAMPLE_BY = ("episode", "step")   # SampleBuilder / DataConfig.sample_by


class SampleBuilder:
    """Normalises episodes once, then cuts stage-1/stage-2 batches out of them."""

    def __init__(self, episodes: EpisodeSource, *, delta_actions: bool,
                 state_norm: Normalizer | None = None, target_norm: Normalizer | None = None,
                 anchors: bool = False, sample_by: str = "episode"):
        """``anchors``: every window also carries ``"anchor"``, its states in target-normalised
        units (state / target std), which re-anchor delta targets at another step (a model with
        ``plan_anchor: current``); needs ``delta_actions``. ``sample_by``: how a sample's episode
        is drawn: ``"episode"``, every episode alike (a long one's steps are seen less often);
        ``"step"``, in proportion to its length, so every step alike (a task whose episodes
        are 1.6x as long gets 1.6x the samples)."""
        if sample_by not in SAMPLE_BY:
            raise ValueError(f"SampleBuilder: sample_by must be one of {list(SAMPLE_BY)}, "
                             f"got {sample_by!r}")
        self.sample_by = sample_by
        if anchors and not delta_actions:
            raise ValueError("SampleBuilder: anchors re-anchor delta targets; need delta_actions")
        self.episodes = [episodes[i] for i in range(len(episodes))]
        if not self.episodes:
            raise EpisodeError("no episodes")
        first = self.episodes[0]
        for ep in self.episodes:
            if (ep.states.shape[1], ep.actions.shape[1]) != (first.states.shape[1],
                                                             first.actions.shape[1]):
                raise EpisodeError(f"episode {ep.name}: dims (state {ep.states.shape[1]}, action "
                                   f"{ep.actions.shape[1]}) differ from episode {first.name} "
                                   f"({first.states.shape[1]}, {first.actions.shape[1]})")
        self.delta = delta_actions
        raw_targets = [self._raw_target(ep) for ep in self.episodes]
        self.state_norm = state_norm or Normalizer.fit(np.concatenate([e.states for e in
                                                                       self.episodes]))
        self.target_norm = target_norm or Normalizer.fit(np.concatenate(raw_targets))
        self.states = [torch.from_numpy(self.state_norm.normalize(e.states)) for e in self.episodes]
        self.lengths = torch.tensor([float(s.shape[0]) for s in self.states])  # sample_by "step"
        self.targets = [torch.from_numpy(self.target_norm.normalize(t)) for t in raw_targets]
        self.tokens = [torch.from_numpy(e.frame_tokens) for e in self.episodes]
        self.anchors = ([torch.from_numpy((e.states / self.target_norm.std).astype(np.float32))
                         for e in self.episodes] if anchors else None)

    def _raw_target(self, ep: Episode) -> np.ndarray:
        return ep.actions - ep.states if self.delta else ep.actions

    @property
    def state_dim(self) -> int:
        return int(self.states[0].shape[1])

    @property
    def action_dim(self) -> int:
        return int(self.targets[0].shape[1])

    @property
    def prefix_shape(self) -> tuple[int, int] | None:
        """(N, prefix_dim) of the frames (None if no episode has frames)."""
        for t in self.tokens:
            if t.shape[0]:
                return int(t.shape[1]), int(t.shape[2])
        return None

    def all_targets(self) -> torch.Tensor:
        return torch.cat(self.targets)

    def _window(self, e: int, start: int, length: int) -> dict[str, torch.Tensor]:
        """Steps start .. start+length-1 of episode e; steps < 0 are padding (valid=False)."""
        T = self.states[e].shape[0]
        pos = torch.arange(start, start + length)
        valid = (pos >= 0) & (pos < T)
        idx = pos.clamp(0, T - 1)
        states = self.states[e][idx] * valid[:, None]
        target = self.targets[e][idx] * valid[:, None]
        prev_idx = (pos - 1).clamp(0, T - 1)
        prev = self.targets[e][prev_idx] * ((pos - 1) >= 0)[:, None]
        out = {"states": states, "target": target, "prev": prev, "positions": pos,
               "valid": valid}
        if self.anchors is not None:
            out["anchor"] = self.anchors[e][idx] * valid[:, None]
        return out

    def _draw(self, candidates: Sequence[int], g: torch.Generator) -> int:
        """One episode of ``candidates`` as ``sample_by`` says."""
        if self.sample_by == "episode":
            return candidates[int(torch.randint(len(candidates), (1,), generator=g))]
        return candidates[int(torch.multinomial(self.lengths[list(candidates)], 1, generator=g))]

    def stage1_batch(self, batch_size: int, length: int, g: torch.Generator
                     ) -> dict[str, torch.Tensor]:
        items = []
        everyone = range(len(self.episodes))
        for _ in range(batch_size):
            e = self._draw(everyone, g)
            T = self.states[e].shape[0]
            start = int(torch.randint(max(T - length, 0) + 1, (1,), generator=g))
            items.append(self._window(e, start, length))
        batch = {k: torch.stack([it[k] for it in items]) for k in items[0]}
        batch["weight"] = batch["valid"].float()
        return batch

    def stage2_batch(self, batch_size: int, spec: SampleSpec, g: torch.Generator
                     ) -> dict[str, torch.Tensor]:
        """History + chunk around a frame with a sampled delay; see the module docstring."""
        candidates = [e for e, t in enumerate(self.tokens) if t.shape[0]]
        if not candidates:
            raise EpisodeError("stage 2 needs episodes with frames (frame_tokens is empty)")
        if spec.prefix_mode == "stream":
            return self._stream_batch(batch_size, spec, g, candidates)
        L = spec.history + spec.chunk
        delays = sample_staleness(g, (batch_size,), spec.max_staleness)
        items, tokens, capture, aux = [], [], [], []
        for b in range(batch_size):
            e = self._draw(candidates, g)
            steps = self.episodes[e].frame_steps
            T = self.states[e].shape[0]
            f = int(torch.randint(len(steps), (1,), generator=g))
            c = int(steps[f])
            d = min(int(delays[b]), T - 1 - c)  # the chunk must start inside the episode
            u = c + d
            it = self._window(e, u - spec.history, L)
            chunk = torch.zeros(L, dtype=torch.bool)
            chunk[spec.history:] = True
            it["chunk"] = chunk & it["valid"]
            it["assign"] = torch.where(it["chunk"], 0, -1)
            items.append(it)
            tokens.append(self.tokens[e][f])
            capture.append(c)
            if spec.aux_chunk:
                a = self._window(e, c, spec.aux_chunk)
                aux.append((a["target"], a["valid"]))
        batch = {k: torch.stack([it[k] for it in items]) for k in items[0]}
        batch["tokens"] = torch.stack(tokens).unsqueeze(1)  # (B, 1, N, P)
        batch["capture"] = torch.tensor(capture).view(-1, 1)  # (B, 1)
        batch["weight"] = batch["valid"].float()
        if spec.aux_chunk:
            batch["aux_target"] = torch.stack([a[0] for a in aux])  # (B, aux, A)
            batch["aux_valid"] = torch.stack([a[1] for a in aux]).float()
        return batch


    def _stream_batch(self, batch_size: int, spec: SampleSpec, g: torch.Generator,
                      candidates: list[int]) -> dict[str, torch.Tensor]:
        """Stage-2 samples exactly as ``ExpertPolicy`` runs: one perception delay ``d`` per
        sample, frame ``f`` arrives at step ``frame_steps[f] + d`` (or never, with probability
        ``frame_drop``), and EVERY step token attends to the newest frame that had arrived by
        its step -- history tokens included, as the cached keys were computed at inference.
        Steps before the first arrival do not exist at inference (the node waits for a prefix)
        and are padding here. The window ends at a uniformly drawn step, so the first steps of
        an episode -- where only the prefix can tell what to do -- are trained as often as any.
        """
        L = spec.history + spec.chunk
        delays = sample_staleness(g, (batch_size,), spec.max_staleness)
        items, frames, captures = [], [], []
        for b in range(batch_size):
            e = self._draw(candidates, g)
            steps = torch.from_numpy(self.episodes[e].frame_steps)
            T = self.states[e].shape[0]
            keep = torch.rand(len(steps), generator=g) >= spec.frame_drop
            keep[0] = keep[0] | ~keep.any()
            kept = torch.nonzero(keep).flatten()                 # frame indices that arrive
            arrival = steps[kept] + int(delays[b])
            if int(arrival[0]) >= T:
                arrival[0] = T - 1
            end = int(torch.randint(int(arrival[0]), T, (1,), generator=g))
            it = self._window(e, end - L + 1, L)
            # newest arrived frame per step (-1 = none yet): arrival is sorted
            newest = torch.searchsorted(arrival, it["positions"], right=True) - 1  # (L,)
            it["valid"] = it["valid"] & (newest >= 0)
            used, assign = torch.unique(newest.clamp_min(0), return_inverse=True)
            it["assign"] = torch.where(it["valid"], assign, -1)
            it["episode"] = torch.tensor(e)
            frames.append(self.tokens[e][kept[used]])             # (F_b, N, P)
            captures.append(steps[kept[used]])
            items.append(it)
        batch = {k: torch.stack([it[k] for it in items]) for k in items[0]}
        F = max(len(c) for c in captures)
        N, P = frames[0].shape[1:]
        batch["tokens"] = torch.zeros(batch_size, F, N, P)
        batch["capture"] = torch.zeros(batch_size, F, dtype=torch.int64)
        for b, (fr, cap) in enumerate(zip(frames, captures)):
            batch["tokens"][b, :len(cap)] = fr
            batch["capture"][b, :len(cap)] = cap
        batch["weight"] = batch["valid"].float()
        return batch


def episode_summary(source: EpisodeSource) -> dict[str, object]:
    """Metadata shared by a source's episodes (the first one's; used for checkpoint meta)."""
    ep = source[0]
    return {f.name: getattr(ep, f.name) for f in dataclasses.fields(ep)
            if f.name in ("control_rate_hz", "model_id", "joint_names", "task")}
