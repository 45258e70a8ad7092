"""Update modes of the learner (``learner.update``): full, lora, sparse."""
from __future__ import annotations

from collections.abc import Callable

import torch

from rlpost.config import Config
from rlpost.learner.modes.base import UpdateMode
from rlpost.registry import Registry

UPDATE_MODES: Registry[Callable[[Config, torch.nn.Module], UpdateMode]] = Registry("update mode")
UPDATE_MODES.register("full")(UpdateMode)


@UPDATE_MODES.register("lora")
def _lora(cfg: Config, model: torch.nn.Module) -> UpdateMode:
    from rlpost.learner.modes.lora import LoRAMode

    return LoRAMode(cfg, model)


@UPDATE_MODES.register("sparse")
def _sparse(cfg: Config, model: torch.nn.Module) -> UpdateMode:
    from rlpost.learner.modes.sparse import SparseMode

    return SparseMode(cfg, model)


def build_update_mode(cfg: Config, model: torch.nn.Module) -> UpdateMode:
    return UPDATE_MODES.get(cfg.learner.update)(cfg, model)


def check_update_mode(cfg: Config, model_path: str | None = None) -> None:
    """Fail before any actor starts if the update mode cannot apply to this model (raises ValueError).

    The model is built on the meta device (no weights read) for LoRA target and mask shape checks;
    checkpoint_diff needs real weights and is checked when the learner starts.
    """
    if cfg.learner.update == "full":
        return
    from transformers import AutoConfig, AutoModelForCausalLM

    from rlpost.models.loading import resolve_model_path

    model_path = model_path or str(resolve_model_path(cfg.model))
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(model_path))
    if cfg.learner.update == "lora":
        from rlpost.learner.modes.lora import check_targets

        if importlib_missing("peft"):
            raise ValueError("learner.update=lora needs peft: pip install 'rlpost[lora]'")
        check_targets(model, cfg.learner.lora.target_modules)
    elif cfg.learner.update == "sparse":
        from rlpost.learner.modes.sparse import build_mask

        if cfg.learner.sparse.mask == "checkpoint_diff":
            from rlpost.models.loading import weight_files

            weight_files(cfg.learner.sparse.diff_base), weight_files(cfg.learner.sparse.diff_tuned)
        if cfg.learner.sparse.mask == "file":
            shapes = {n: tuple(p.shape) for n, p in model.named_parameters() if p.dim() >= 2}
            build_mask(cfg, shapes, {})
        if cfg.optim.name != "adamw":
            raise ValueError(f"learner.update=sparse trains with a masked AdamW; optim.name={cfg.optim.name} is not supported")


def importlib_missing(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is None
