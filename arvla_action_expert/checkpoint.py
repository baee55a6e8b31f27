"""Checkpoints: a directory with ``model.safetensors`` + ``config.json`` (+ ``optim.safetensors``).

- Weights (and normaliser stats, bin centres) are safetensors: no pickle, so loading a file
  cannot execute code. ``.pt/.pth/.pkl`` paths are refused outright.
- ``config.json`` holds the ExpertConfig the model is rebuilt from, metadata (model_id,
  control_rate_hz, joint_names, stage, step, and the perception settings the prefixes were made
  with), the training config and the sha256 of the weights file. It is written last, so a
  directory with a config always has complete weights.
- Every file is written to a temp file in the same directory and ``os.replace``d, and
  ``config.json`` (with the sha256 of the weights) is the single commit point: new weights are
  first written beside the old ones as ``model.safetensors.pending``, then config.json is
  replaced, then the pending file is renamed over the old weights. A process killed at any
  moment leaves either the previous checkpoint or the new one loadable (a kill between the
  last two renames is rolled forward on load: config.json's sha names the pending file).
  Never a torn pair of new weights with an old config.
- Loading checks everything and raises ``CheckpointError`` naming what is wrong (key, expected
  shape, got shape; which file is truncated).
- The pieces (``commit_checkpoint``, ``read_checkpoint_config``, ``read_committed_weights``,
  ``load_model_tensors``, ``load_normalizers``) are public: the chunked baseline
  (``arvla_baselines.chunk``, format ``arvla-chunk/1``) writes and reads its checkpoints
  through the same code, so both have the same crash safety.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pathlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from arvla_base.fileio import atomic_write
from arvla_base.config import ConfigError, from_dict, to_dict
from arvla_action_expert.model import ARExpert, ExpertConfig
from arvla_action_expert.normalize import Normalizer

__all__ = ["CheckpointError", "CheckpointMeta", "LoadedCheckpoint", "PICKLE_SUFFIXES",
           "atomic_write", "checkpoint_tensors", "commit_checkpoint", "committed_file", "load_checkpoint",
           "load_model_tensors", "load_normalizers", "read_checkpoint_config",
           "read_committed_weights", "read_tensors", "resolve_checkpoint_dir", "save_checkpoint",
           "sha256_file"]

FORMAT = "arvla-expert/1"
WEIGHTS = "model.safetensors"
OPTIM = "optim.safetensors"
CONFIG = "config.json"
PICKLE_SUFFIXES = {".pt", ".pth", ".pkl", ".pickle", ".bin", ".ckpt"}
PENDING = ".pending"  # suffix of weights written but not yet renamed into place


class CheckpointError(RuntimeError):
    """A checkpoint cannot be written or read; the message says which file/key and why."""


@dataclass
class CheckpointMeta:
    model_id: str = ""                       # perception model the prefixes came from
    control_rate_hz: float = 20.0            # rate of the training data
    joint_names: list[str] = field(default_factory=list)
    stage: int = 1                           # 1 = action only, 2 = with prefixes
    step: int = 0                            # optimiser steps taken
    max_staleness: int = 0                   # largest staleness seen in training (stage 2)
    # Settings of the perception backbone that made the prefixes (arvla_perception.config
    # TOKEN_FIELDS: backbone, hidden_layer, token_grid, ...): bring-up starts perception with them,
    # so its model_id is this one. {} = not recorded (checkpoints from before they were).
    perception: dict[str, Any] = field(default_factory=dict)


@dataclass
class LoadedCheckpoint:
    model: ARExpert
    state_norm: Normalizer
    target_norm: Normalizer
    meta: CheckpointMeta
    train_config: dict[str, Any] | None
    optimizer_state: dict[str, Any] | None
    path: pathlib.Path


def sha256_file(path: pathlib.Path) -> str:
    """Hex sha256 of a file, read in 1 MiB pieces (weights files can be large)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _optimizer_tensors(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split an optimiser state_dict into flat tensors + JSON-able rest (no pickle needed)."""
    tensors, plain = {}, {"param_groups": state["param_groups"], "scalars": {}}
    for pid, st in state["state"].items():
        for name, val in st.items():
            if torch.is_tensor(val):
                tensors[f"{pid}.{name}"] = val.detach().cpu().contiguous()
            else:
                plain["scalars"][f"{pid}.{name}"] = val
    return tensors, plain


def _optimizer_state(tensors: dict[str, torch.Tensor], plain: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for key, val in list(tensors.items()) + list(plain["scalars"].items()):
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = val
    return {"state": state, "param_groups": plain["param_groups"]}


def checkpoint_tensors(model: torch.nn.Module, state_norm: Normalizer, target_norm: Normalizer
                       ) -> dict[str, torch.Tensor]:
    """What ``model.safetensors`` holds: the ``model.*`` weights and the normaliser statistics
    ``norm.{state,target}.{mean,std}`` (normalisation lives outside the network, but a policy is
    only usable with the statistics it was trained with, so they travel together)."""
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    for name, norm in (("state", state_norm), ("target", target_norm)):
        tensors[f"norm.{name}.mean"] = torch.from_numpy(np.ascontiguousarray(norm.mean, np.float32))
        tensors[f"norm.{name}.std"] = torch.from_numpy(np.ascontiguousarray(norm.std, np.float32))
    return tensors


def commit_checkpoint(path: str | os.PathLike[str], doc: dict[str, Any],
                      weights: dict[str, torch.Tensor], *, fmt: str,
                      optim: dict[str, torch.Tensor] | None = None) -> pathlib.Path:
    """Write a checkpoint directory whose single commit point is ``config.json``.

    1. ``weights`` (and ``optim``) go beside the old files as ``*.safetensors.pending``;
    2. ``config.json`` = ``doc`` + the sha256 of each pending file replaces the old config;
    3. the pending files are renamed into place.

    A kill before 2 leaves the previous checkpoint (its config names its own weights); a kill
    between 2 and 3 is rolled forward on load (``committed_file``). Every file is written with
    ``atomic_write``. Shared by the expert's and the chunked baseline's checkpoints, so both
    have the same crash safety. ``fmt`` is stored in the weights' safetensors metadata; the
    caller puts it in ``doc["format"]``. Returns the directory.
    """
    d = pathlib.Path(path)
    if d.suffix.lower() in PICKLE_SUFFIXES:
        raise CheckpointError(f"{d}: checkpoints are directories of safetensors, not {d.suffix}")
    d.mkdir(parents=True, exist_ok=True)
    # 1. the new files beside the old ones (complete once they exist under the pending name)
    atomic_write(d / (WEIGHTS + PENDING),
                 lambda tmp: save_file(weights, tmp, metadata={"format": fmt}))
    if optim is not None:
        atomic_write(d / (OPTIM + PENDING), lambda tmp: save_file(optim, tmp))
    doc = {**doc, "weights_sha256": sha256_file(d / (WEIGHTS + PENDING)),
           "optim_sha256": sha256_file(d / (OPTIM + PENDING)) if optim is not None else None}

    def write_json(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(doc, f, indent=2)

    atomic_write(d / CONFIG, write_json)  # 2. the commit point
    os.replace(d / (WEIGHTS + PENDING), d / WEIGHTS)  # 3. into place (rolled forward on load if cut here)
    if optim is not None:
        os.replace(d / (OPTIM + PENDING), d / OPTIM)
    return d


def save_checkpoint(path: str | os.PathLike[str], model: ARExpert, *, state_norm: Normalizer,
                    target_norm: Normalizer, meta: CheckpointMeta,
                    train_config: dict[str, Any] | None = None,
                    optimizer: torch.optim.Optimizer | None = None) -> pathlib.Path:
    """Write the checkpoint directory ``path`` (``commit_checkpoint``); returns the path."""
    optim_tensors, optim_plain = (_optimizer_tensors(optimizer.state_dict())
                                  if optimizer is not None else (None, None))
    doc = {"format": FORMAT, "expert": to_dict(model.config), "meta": to_dict(meta),
           "train": train_config, "optimizer": optim_plain}
    return commit_checkpoint(path, doc, checkpoint_tensors(model, state_norm, target_norm),
                             fmt=FORMAT, optim=optim_tensors)


def committed_file(d: pathlib.Path, name: str, sha: str | None) -> pathlib.Path:
    """The file holding the committed content of ``name``: ``name`` itself or, after a save was
    cut between committing config.json and renaming, its pending copy (matched by sha256).
    ``sha`` is what config.json recorded (None: an old checkpoint without one, trust ``name``);
    neither file matching it -> CheckpointError."""
    path, pending = d / name, d / (name + PENDING)
    if not sha:
        return path
    if path.is_file() and sha256_file(path) == sha:
        return path
    if pending.is_file() and sha256_file(pending) == sha:
        return pending
    raise CheckpointError(f"{path}: sha256 differs from {CONFIG} (file replaced or truncated after the "
                          "checkpoint was written)")


def resolve_checkpoint_dir(path: str | os.PathLike[str]) -> pathlib.Path:
    """A checkpoint directory, or a file inside one -> the directory; pickle paths refused."""
    p = pathlib.Path(path)
    if p.suffix.lower() in PICKLE_SUFFIXES:
        raise CheckpointError(f"{p}: refusing to load a pickle-based checkpoint ({p.suffix}); "
                              f"arvla checkpoints are a directory with {WEIGHTS} + {CONFIG}")
    if p.is_file():
        p = p.parent
    if not p.is_dir():
        raise CheckpointError(f"checkpoint not found: {p}")
    for name in (CONFIG, WEIGHTS):
        if not (p / name).is_file() and not (name == WEIGHTS and (p / (WEIGHTS + PENDING)).is_file()):
            raise CheckpointError(f"{p}: missing {name} (incomplete or not an arvla checkpoint)")
    return p


def read_checkpoint_config(path: str | os.PathLike[str], fmt: str
                           ) -> tuple[pathlib.Path, dict[str, Any]]:
    """(directory, parsed config.json) of the checkpoint at ``path``; CheckpointError when the
    JSON is unreadable or its ``format`` is not ``fmt`` (so an expert checkpoint is never loaded
    as a chunked one, or the other way round)."""
    d = resolve_checkpoint_dir(path)
    try:
        doc = json.loads((d / CONFIG).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{d / CONFIG}: not valid JSON (truncated?): {err}") from err
    if not isinstance(doc, dict) or doc.get("format") != fmt:
        got = doc.get("format") if isinstance(doc, dict) else type(doc).__name__
        raise CheckpointError(f"{d / CONFIG}: format {got!r}, expected {fmt!r}")
    return d, doc


def read_tensors(path: pathlib.Path, device: str) -> dict[str, torch.Tensor]:
    """Every tensor of a safetensors file; a truncated or corrupt file -> CheckpointError naming
    the file and its size (safetensors' own errors do not say which file)."""
    try:
        return load_file(str(path), device=device)
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise CheckpointError(f"{path}: corrupt or truncated safetensors file "
                              f"({path.stat().st_size} bytes): {err}") from err


def read_committed_weights(d: pathlib.Path, doc: dict[str, Any], device: str
                           ) -> tuple[dict[str, torch.Tensor], pathlib.Path]:
    """(tensors, file) of the weights ``config.json`` committed to (``committed_file``)."""
    weights = committed_file(d, WEIGHTS, doc.get("weights_sha256"))
    return read_tensors(weights, device), weights


def load_normalizers(tensors: dict[str, torch.Tensor], *, state_dim: int, action_dim: int,
                     source: pathlib.Path) -> tuple[Normalizer, Normalizer]:
    """(state, target) normalisers from ``checkpoint_tensors``' ``norm.*`` entries, checked
    against the model's dims; ``source`` names the file in errors."""
    try:
        norms = [Normalizer(tensors[f"norm.{n}.mean"].cpu().numpy(),
                            tensors[f"norm.{n}.std"].cpu().numpy()) for n in ("state", "target")]
    except KeyError as err:
        raise CheckpointError(f"{source}: missing normaliser tensor {err}") from err
    for norm, dim, what in ((norms[0], state_dim, "state"), (norms[1], action_dim, "target")):
        if norm.mean.shape != (dim,) or norm.std.shape != (dim,):
            raise CheckpointError(f"{source}: norm.{what}: expected shape ({dim},), got "
                                  f"{tuple(norm.mean.shape)} / {tuple(norm.std.shape)}")
    return norms[0], norms[1]


def load_checkpoint(path: str | os.PathLike[str], device: str = "cpu", *,
                    expect: ExpertConfig | None = None,
                    load_optimizer: bool = False) -> LoadedCheckpoint:
    """Rebuild the model from ``config.json`` and load the weights, checking every shape.

    ``expect``: a config the checkpoint must match exactly (e.g. ``--init`` for stage 2);
    the first differing field is named.
    """
    d, doc = read_checkpoint_config(path, FORMAT)
    try:
        config = from_dict(ExpertConfig, doc["expert"], prefix="expert.")
        meta = from_dict(CheckpointMeta, doc.get("meta") or {}, prefix="meta.")
    except (ConfigError, KeyError) as err:
        raise CheckpointError(f"{d / CONFIG}: invalid config: {err}") from err
    if expect is not None and expect != config:
        diffs = [f"{f.name}: expected {getattr(expect, f.name)!r}, checkpoint has "
                 f"{getattr(config, f.name)!r}" for f in dataclasses.fields(ExpertConfig)
                 if getattr(expect, f.name) != getattr(config, f.name)]
        raise CheckpointError(f"{d}: config mismatch: " + "; ".join(diffs))
    tensors, weights = read_committed_weights(d, doc, device)
    model = ARExpert(config)
    load_model_tensors(model, tensors, source=str(weights))
    state_norm, target_norm = load_normalizers(tensors, state_dim=config.state_dim,
                                               action_dim=config.action_dim, source=d / WEIGHTS)
    opt_state = None
    if load_optimizer and doc.get("optimizer") is not None:
        if not (d / OPTIM).is_file() and not (d / (OPTIM + PENDING)).is_file():
            raise CheckpointError(f"{d}: config lists optimiser state but {OPTIM} is missing")
        optim = committed_file(d, OPTIM, doc.get("optim_sha256"))
        opt_state = _optimizer_state(read_tensors(optim, "cpu"), doc["optimizer"])
    return LoadedCheckpoint(model.to(device), state_norm, target_norm, meta, doc.get("train"),
                            opt_state, d)


def load_model_tensors(model: torch.nn.Module, tensors: dict[str, torch.Tensor], *,
                       source: str) -> None:
    """Copy ``model.*`` tensors into ``model``; any missing/unexpected key, shape or dtype ->
    CheckpointError naming ``source``, the key and both shapes (never a silent partial load)."""
    own = model.state_dict()
    got = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    missing = sorted(set(own) - set(got))
    unexpected = sorted(set(got) - set(own))
    if missing or unexpected:
        raise CheckpointError(f"{source}: weights do not match the config: missing "
                              f"{missing[:5]}{'...' if len(missing) > 5 else ''}, unexpected "
                              f"{unexpected[:5]}{'...' if len(unexpected) > 5 else ''}")
    for key, want in own.items():
        if tuple(got[key].shape) != tuple(want.shape):
            raise CheckpointError(f"{source}: model.{key}: expected shape {tuple(want.shape)}, "
                                  f"got {tuple(got[key].shape)}")
        if got[key].dtype != want.dtype:
            raise CheckpointError(f"{source}: model.{key}: expected dtype {want.dtype}, got "
                                  f"{got[key].dtype}")
    model.load_state_dict(got)
