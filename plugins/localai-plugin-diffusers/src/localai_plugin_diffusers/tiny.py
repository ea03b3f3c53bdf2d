"""A tiny random-weight Stable Diffusion pipeline, saved like a real one (for tests and benchmarks).

No image model ships on PyPI, so tests build this one offline: a byte-level CLIP BPE vocab of
520 tokens, a 2-block UNet, a 2-block VAE (scale factor 2) and a 2-layer CLIP text encoder.
``build_tiny_pipeline(dir)`` writes it with ``save_pretrained`` (about 6.5 MB); it then loads
through ``DiffusionPipeline.from_pretrained(dir)`` like any downloaded model. The images are noise.

Usage: ``python -m localai_plugin_diffusers.tiny OUT_DIR``
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

MERGES = ["t h", "th e</w>", "c a", "ca t</w>", "d o", "do g</w>"]


def _byte_symbols() -> list[str]:
    """The GPT-2/CLIP byte-level alphabet (256 printable symbols)."""
    bs = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for c in cs]


def _write_tokenizer_files(tok_dir: Path) -> dict[str, int]:
    syms = _byte_symbols()
    vocab_list = syms + [s + "</w>" for s in syms] + [m.replace(" ", "") for m in MERGES]
    vocab = {t: i for i, t in enumerate(vocab_list + ["<|startoftext|>", "<|endoftext|>"])}
    (tok_dir / "vocab.json").write_text(json.dumps(vocab))
    (tok_dir / "merges.txt").write_text("#version: 0.2\n" + "\n".join(MERGES) + "\n")
    return vocab


def build_tiny_pipeline(out_dir: str | os.PathLike, seed: int = 0) -> Path:
    """Build and ``save_pretrained`` a tiny StableDiffusionPipeline into ``out_dir``; return it."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer
    from transformers.utils import logging as tf_logging

    out = Path(out_dir)
    with tempfile.TemporaryDirectory(prefix="tiny-sd-tok-") as tmp:
        vocab = _write_tokenizer_files(Path(tmp))
        # transformers 5.x ignores CLIPTokenizer(vocab_file=..., merges_file=...): load the directory
        tokenizer = CLIPTokenizer.from_pretrained(tmp, model_max_length=77)

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64), layers_per_block=1, sample_size=32, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32, attention_head_dim=8, norm_num_groups=32,
    )
    vae = AutoencoderKL(
        block_out_channels=[32, 64], in_channels=3, out_channels=3,
        down_block_types=["DownEncoderBlock2D"] * 2, up_block_types=["UpDecoderBlock2D"] * 2,
        latent_channels=4, norm_num_groups=32, sample_size=64,
    )
    n = len(vocab)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        bos_token_id=n - 2, eos_token_id=n - 1, pad_token_id=n - 1, hidden_size=32, intermediate_size=37,
        layer_norm_eps=1e-5, num_attention_heads=4, num_hidden_layers=2, vocab_size=n,
        max_position_embeddings=77,
    ))
    scheduler = DDIMScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
        clip_sample=False, set_alpha_to_one=False, steps_offset=1,
    )
    pipe = StableDiffusionPipeline(
        unet=unet, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, scheduler=scheduler,
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    bars = tf_logging.is_progress_bar_enabled()
    tf_logging.disable_progress_bar()
    try:
        pipe.save_pretrained(out)
    finally:
        if bars:
            tf_logging.enable_progress_bar()
    return out


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m localai_plugin_diffusers.tiny OUT_DIR")
    print(build_tiny_pipeline(sys.argv[1]))
