"""Model and tokenizer loading: local HF folders, GGUF via transformers, the tiny test model."""
from rlpost.models.loading import load_model, load_tokenizer, resolve_model_path

__all__ = ["load_model", "load_tokenizer", "resolve_model_path"]
