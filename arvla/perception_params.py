"""The perception parameters that go with an expert checkpoint (launch files, ``arvla bringup``).

An expert understands only prefixes from the backbone it was trained on: each VLPrefix carries
that backbone's model_id and the expert FAULTs on any other. The model_id follows from a few
perception settings (``arvla_perception.config.TOKEN_FIELDS``: backbone, hidden_layer,
token_grid, ...), which training records in the checkpoint's config.json (``meta.perception``).
``resolve_perception_params`` picks the perception node's parameters file for a checkpoint:

- no ``perception_params`` given: the default file (config/perception.yaml) with the
  checkpoint's settings on top, written to a file of its own (``settings_file``). A checkpoint
  that records none (trained before they were recorded) gets the default file, as before;
- ``perception_params`` given: that file, once its settings are checked against the
  checkpoint's; a difference -> PerceptionSettingsError naming the parameter, both values and
  the file to use instead.

``CheckpointPerceptionParams`` does the same as a launch substitution (launch/*.launch.py). This
module imports neither launch nor rclpy (nor torch until a checkpoint is read), so
``arvla bringup`` and the tests use it where launch is not installed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import pathlib
import tempfile
from typing import Any, Mapping

import yaml

from arvla_base.config import ConfigError, load_yaml
from arvla_base.fileio import atomic_write_text
from arvla_base.params import PERCEPTION_NODE, read_node_params
from arvla_perception.config import TOKEN_FIELDS, token_settings_of

try:  # a real ROS 2 install: the launch files use CheckpointPerceptionParams as a substitution
    from launch.substitution import Substitution as _Substitution
except ImportError:  # PyPI ROS (no launch): `arvla bringup` calls resolve_perception_params itself
    _Substitution = object  # type: ignore[assignment,misc]

__all__ = ["CheckpointPerception", "CheckpointPerceptionParams", "NODE", "PerceptionParams",
           "PerceptionSettingsError", "checkpoint_perception", "read_node_params",
           "resolve_perception_params", "settings_differences", "settings_file",
           "token_settings_of"]

NODE = PERCEPTION_NODE
# Paths on this host, compared through model_id (it hashes the weight files), not as strings.
_LOCATIONS = ("model_path", "text_model_path")

log = logging.getLogger("arvla.bringup")


class PerceptionSettingsError(ConfigError):
    """The perception parameters do not make the prefixes a checkpoint was trained on."""


@dataclasses.dataclass(frozen=True)
class CheckpointPerception:
    path: pathlib.Path          # the checkpoint directory
    model_id: str               # of the prefixes it was trained on ("" = any)
    settings: dict[str, Any]    # meta.perception: TOKEN_FIELDS values ({} = not recorded)


@dataclasses.dataclass(frozen=True)
class PerceptionParams:
    file: str     # the perception node's parameters file
    source: str   # one line for the log: where its perception settings come from


def checkpoint_perception(checkpoint: str | os.PathLike[str]) -> CheckpointPerception:
    """model_id and recorded perception settings of an expert checkpoint (its config.json only)."""
    from arvla_action_expert.checkpoint import FORMAT, CheckpointError, read_checkpoint_config

    d, doc = read_checkpoint_config(checkpoint, FORMAT)
    meta = doc.get("meta") or {}
    settings = meta.get("perception") or {}
    if not isinstance(settings, dict) or set(settings) - set(TOKEN_FIELDS):
        raise CheckpointError(f"{d}/config.json: meta.perception must map perception settings "
                              f"({', '.join(TOKEN_FIELDS)}), got {settings!r}")
    return CheckpointPerception(d, str(meta.get("model_id") or ""), dict(settings))


def settings_differences(trained: Mapping[str, Any], given: Mapping[str, Any]
                         ) -> list[tuple[str, Any, Any]]:
    """(name, trained value, given value) for each token setting recorded in ``trained`` that
    ``given`` sets otherwise. Paths (model_path, text_model_path) name files on this host and
    are compared through model_id's hash of the weights, except text_model_path 'none' (no
    instruction tokens), which changes the tokens."""
    out = []
    for name in TOKEN_FIELDS:
        if name not in trained:
            continue
        want, got = trained[name], given.get(name)
        if name in _LOCATIONS:
            if name == "text_model_path" and _no_text(want) != _no_text(got):
                out.append((name, want, got))
        elif want != got:
            out.append((name, want, got))
    return out


def _no_text(path: Any) -> bool:
    return str(path).strip().lower() == "none"


def settings_file(ck: CheckpointPerception, default: str | os.PathLike[str],
                  out_dir: str | os.PathLike[str] | None = None) -> str:
    """A parameters file: ``default`` with the checkpoint's perception settings in its
    perception block, written (atomically, named by content) to ``out_dir`` (default: a folder
    of this user's in the temp directory). Returns its path."""
    doc = load_yaml(default)
    token_settings_of({**read_node_params(default), **ck.settings})  # checked before written
    block = doc.setdefault(NODE, {}).setdefault("ros__parameters", {})
    block.update(ck.settings)
    text = (f"# perception parameters for the expert checkpoint {ck.path} (model_id "
            f"'{ck.model_id}'):\n# {default} with the settings recorded in its config.json\n"
            + yaml.safe_dump(doc, sort_keys=False, default_flow_style=None))
    folder = pathlib.Path(out_dir) if out_dir is not None else (
        pathlib.Path(tempfile.gettempdir()) / f"arvla-perception-{os.getuid()}")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{ck.path.name}-{hashlib.sha256(text.encode()).hexdigest()[:12]}.yaml"
    if not path.is_file() or path.read_text(encoding="utf-8") != text:
        atomic_write_text(path, text)
    return str(path)


def _describe(settings: Mapping[str, Any], base: Mapping[str, Any], default: str) -> str:
    changed = [f"{k} {v!r}" for k, v in settings.items() if base.get(k) != v]
    if not changed:
        return f"the same as {default}"
    return ", ".join(changed) + f" (the rest as {default})"


def resolve_perception_params(checkpoint: str, perception_params: str, default: str, *,
                              overrides: Mapping[str, Any] | None = None,
                              out_dir: str | os.PathLike[str] | None = None) -> PerceptionParams:
    """The perception node's parameters file for ``checkpoint`` ('' = none) and where its
    settings come from. ``perception_params``: the file the user gave ('' = none: ``default``
    with the checkpoint's recorded settings); ``overrides``: node parameters set after the file
    (e.g. model_path). A given file whose settings differ from the checkpoint's ->
    PerceptionSettingsError naming the parameter and the file to use."""
    ck = checkpoint_perception(checkpoint) if checkpoint else None
    extra = dict(overrides or {})
    if perception_params:
        if ck is None or not ck.settings:
            return PerceptionParams(perception_params, f"perception settings from {perception_params}")
        given = token_settings_of({**read_node_params(perception_params), **extra})
        diffs = settings_differences(ck.settings, given)
        if diffs:
            fix = settings_file(ck, default, out_dir)
            name, want, got = diffs[0]
            more = "".join(f"; {n} {g!r} (trained: {w!r})" for n, w, g in diffs[1:])
            raise PerceptionSettingsError(
                f"perception_params {perception_params} sets {name} {got!r}, but the expert "
                f"checkpoint {ck.path} was trained on prefixes made with {name} {want!r}{more} "
                f"(model_id '{ck.model_id}'): it would FAULT on every prefix. Use "
                f"perception_params:={fix} (the checkpoint's perception settings), or leave "
                "perception_params unset to have them applied")
        return PerceptionParams(perception_params, f"perception settings from {perception_params} "
                                                   f"(those checkpoint {ck.path} was trained with)")
    if ck is None:
        return PerceptionParams(default, f"perception settings from {default}")
    if not ck.settings:
        return PerceptionParams(default, f"perception settings from {default}: checkpoint {ck.path} "
                                         "records none (trained before checkpoints recorded them); "
                                         f"it expects prefixes with model_id '{ck.model_id}'")
    file = settings_file(ck, default, out_dir)
    base = token_settings_of(read_node_params(default))
    note = "".join(f"; {k} {extra[k]!r} here, {ck.settings[k]!r} in training (the weights are "
                   "checked by model_id)" for k in _LOCATIONS
                   if k in extra and k in ck.settings and extra[k] != ck.settings[k])
    return PerceptionParams(file, f"perception settings from checkpoint {ck.path}: "
                                  f"{_describe(ck.settings, base, default)}{note} -> {file}")


def _perform(value: Any, context: Any) -> str:
    """A launch substitution argument as text: a string, a substitution or a list of them."""
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)):
        return "".join(_perform(v, context) for v in value)
    return str(value.perform(context))


class CheckpointPerceptionParams(_Substitution):
    """Launch substitution: the perception node's parameters file for a checkpoint
    (``resolve_perception_params``), as ``Node(parameters=[CheckpointPerceptionParams(...), {...}])``.

    Arguments are strings or substitutions (LaunchConfiguration, PathJoinSubstitution). When the
    launch runs, it logs where the settings come from; a given file that does not match the
    checkpoint stops the launch with PerceptionSettingsError. ``arvla bringup`` reads the same
    call from the launch file (``arvla.launch_graph``) and resolves it with the same function.
    """

    def __init__(self, checkpoint: Any, perception_params: Any, default: Any) -> None:
        super().__init__()
        self.checkpoint, self.perception_params, self.default = checkpoint, perception_params, default

    def describe(self) -> str:
        return "CheckpointPerceptionParams(checkpoint, perception_params, default)"

    def perform(self, context: Any) -> str:
        result = resolve_perception_params(_perform(self.checkpoint, context),
                                           _perform(self.perception_params, context),
                                           _perform(self.default, context))
        try:
            import launch.logging

            launch.logging.get_logger("arvla").info(result.source)
        except ImportError:
            log.info(result.source)
        return result.file
