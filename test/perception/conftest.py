"""Tiny transformers models saved with ``save_pretrained`` into tmp dirs, for the loading path.

They go through exactly the code users run (``load_backbone`` on a directory, with
``local_files_only``); nothing here is downloaded.
"""

from __future__ import annotations

import pathlib

import pytest

WORDS = ["pick", "place", "push", "the", "red", "blue", "cube", "block", "up", "on", "to", "left",
         "right", "stack", "open", "drawer", "a", "and", "t"]


def _save_tiny_resnet(d: pathlib.Path) -> pathlib.Path:
    import torch
    from transformers import ResNetConfig, ResNetModel

    torch.manual_seed(0)
    cfg = ResNetConfig(num_channels=3, embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1],
                       layer_type="basic", hidden_act="relu")
    ResNetModel(cfg).save_pretrained(d)
    return d


def _save_tiny_siglip_vision(d: pathlib.Path) -> pathlib.Path:
    import torch
    from transformers import SiglipVisionConfig, SiglipVisionModel

    torch.manual_seed(1)
    cfg = SiglipVisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                             num_attention_heads=2, image_size=32, patch_size=8)
    SiglipVisionModel(cfg).save_pretrained(d)
    return d


def _save_tiny_siglip_full(d: pathlib.Path) -> pathlib.Path:
    """A vision + text SiglipModel: the backbone must find and use its vision tower."""
    import torch
    from transformers import SiglipConfig, SiglipModel

    torch.manual_seed(2)
    cfg = SiglipConfig(
        text_config=dict(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, max_position_embeddings=16,
                         pad_token_id=0, bos_token_id=1, eos_token_id=2),
        vision_config=dict(hidden_size=24, intermediate_size=32, num_hidden_layers=2,
                           num_attention_heads=2, image_size=32, patch_size=8))
    SiglipModel(cfg).save_pretrained(d)
    return d


def _save_tiny_bert(d: pathlib.Path) -> pathlib.Path:
    import torch
    from transformers import BertConfig, BertModel, BertTokenizer

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + WORDS
    tokenizer = BertTokenizer(vocab={w: i for i, w in enumerate(vocab)})
    # Guard the fixture itself: a vocabulary that silently maps every word to [UNK] would make
    # all instructions identical and the "text matters" tests meaningless.
    assert tokenizer("pick the red cube")["input_ids"] == [2, 5, 8, 9, 11, 3]
    tokenizer.save_pretrained(d)
    torch.manual_seed(3)
    cfg = BertConfig(vocab_size=len(vocab), hidden_size=12, num_hidden_layers=1,
                     num_attention_heads=2, intermediate_size=24, max_position_embeddings=32)
    BertModel(cfg).save_pretrained(d)
    return d


def _save_tiny_paligemma(d: pathlib.Path) -> pathlib.Path:
    """A PaliGemma-class VLM (SigLIP 32 px / 8 px patches -> 16 image tokens, 2-layer Gemma, width
    24) with the tiny BERT tokenizer beside it: ids 0..23 are text, 63 is the image token."""
    import torch
    from transformers import PaliGemmaConfig, PaliGemmaForConditionalGeneration

    torch.manual_seed(4)
    cfg = PaliGemmaConfig(
        vision_config=dict(model_type="siglip_vision_model", hidden_size=16, intermediate_size=32,
                           num_hidden_layers=1, num_attention_heads=2, image_size=32, patch_size=8,
                           projection_dim=24),
        text_config=dict(model_type="gemma", vocab_size=64, hidden_size=24, intermediate_size=48,
                         num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                         head_dim=12, pad_token_id=0, bos_token_id=2, eos_token_id=3),
        image_token_index=63, projection_dim=24, hidden_size=24, vocab_size=64)
    PaliGemmaForConditionalGeneration(cfg).save_pretrained(d)
    _save_tiny_bert(d / "tok")
    for f in (d / "tok").iterdir():
        if f.name.startswith(("tokenizer", "vocab", "special_tokens")):
            f.rename(d / f.name)
    return d


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict[str, pathlib.Path]:
    root = tmp_path_factory.mktemp("tiny_models")
    return {
        "resnet": _save_tiny_resnet(root / "tiny-resnet"),
        "siglip_vision": _save_tiny_siglip_vision(root / "tiny-siglip-vision"),
        "siglip_full": _save_tiny_siglip_full(root / "tiny-siglip"),
        "bert": _save_tiny_bert(root / "tiny-bert"),
        "paligemma": _save_tiny_paligemma(root / "tiny-paligemma"),
    }
