"""A ~1M-parameter Qwen2/Llama model with a char-level tokenizer, built deterministically from
its config and cached by a hash of that config (tests and the quickstart need no downloads)."""
from __future__ import annotations

import hashlib
import json
import os
import string
import tempfile
from pathlib import Path

import torch

from rlpost.config import TinyModelConfig

SPECIAL_TOKENS = ["<pad>", "<bos>", "<eos>", "<unk>"]
# Printable ASCII minus the vertical-tab/form-feed/carriage-return oddities.
CHARS = [c for c in string.printable if c not in "\x0b\x0c\r"]
BUILD_VERSION = 1  # bump when the build procedure changes, to invalidate caches


def build_char_tokenizer():
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS + CHARS)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    tok.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", bos_token="<bos>", eos_token="<eos>", unk_token="<unk>"
    )


def config_hash(cfg: TinyModelConfig) -> str:
    blob = json.dumps({"v": BUILD_VERSION, **cfg.model_dump()}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def build_tiny_model(cfg: TinyModelConfig, out_dir: Path) -> Path:
    """Build (or reuse) the tiny model in `out_dir/tiny-<hash>` and return that folder."""
    from transformers import AutoModelForCausalLM, LlamaConfig, Qwen2Config

    target = Path(out_dir) / f"tiny-{cfg.arch}-{config_hash(cfg)}"
    if (target / "config.json").is_file():
        return target
    tokenizer = build_char_tokenizer()
    common = dict(
        vocab_size=len(tokenizer),
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        num_key_value_heads=cfg.num_kv_heads,
        max_position_embeddings=cfg.max_position_embeddings,
        tie_word_embeddings=cfg.tie_word_embeddings,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    config = Qwen2Config(**common) if cfg.arch == "qwen2" else LlamaConfig(**common)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    target.parent.mkdir(parents=True, exist_ok=True)
    # Build in a temp folder and rename, so a concurrent or interrupted build never leaves half a model.
    tmp = Path(tempfile.mkdtemp(prefix=".tiny-", dir=target.parent))
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    try:
        os.replace(tmp, target)
    except OSError:  # another process won the race
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return target
