"""Shared fixtures: offline, one torch thread, a tiny model built once per session."""
from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory) -> str:
    from rlpost.config import TinyModelConfig
    from rlpost.models.tiny import build_tiny_model

    return str(build_tiny_model(TinyModelConfig(), tmp_path_factory.mktemp("models")))


@pytest.fixture(scope="session")
def tiny_untied_model_path(tmp_path_factory) -> str:
    from rlpost.config import TinyModelConfig
    from rlpost.models.tiny import build_tiny_model

    cfg = TinyModelConfig(arch="llama", tie_word_embeddings=False, num_layers=2)
    return str(build_tiny_model(cfg, tmp_path_factory.mktemp("models")))


@pytest.fixture
def run_dir(tmp_path):
    return tmp_path / "run"
