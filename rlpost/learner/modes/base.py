"""The update-mode seam of the learner: which parameters train, what optimizer state exists, and
what a weight sync exports. ``full`` lives here; ``lora`` and ``sparse`` build on it."""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rlpost.config import Config
from rlpost.learner.optim import build_optimizer
from rlpost.sync import pack


class UpdateMode:
    """Full fine-tuning: every parameter trains with AdamW; each sync sends every weight densely."""

    name = "full"
    has_reference_view = False  # True: reference() gives the frozen policy without a second model

    def __init__(self, cfg: Config, model: torch.nn.Module) -> None:
        self.cfg = cfg
        self.model = model
        self._buffer: np.ndarray | None = None

    # -------------------------------------------------------------- training

    def trainable(self) -> list[torch.nn.Parameter]:
        return [p for p in self.model.parameters() if p.requires_grad]

    def make_optimizer(self, total_steps: int):
        o = self.cfg.optim
        return build_optimizer(
            self.trainable(), o.lr, total_steps, o.warmup_steps, o.schedule, o.min_lr_ratio,
            o.weight_decay, o.betas, o.eps, o.name,
        )

    def clip_grads(self, max_norm: float) -> torch.Tensor:
        """Global gradient norm over what trains, clipped to `max_norm`; returns the norm before clipping."""
        return torch.nn.utils.clip_grad_norm_(self.trainable(), max_norm)

    def gradient(self, p: torch.nn.Parameter) -> torch.Tensor | None:
        """The entries of ``p.grad`` that train (all of them here), flat or in shape."""
        return p.grad

    def step(self, optimizer, scheduler) -> bool:
        """Apply the update; False when this mode spent the step otherwise (e.g. scoring a mask)."""
        optimizer.step()
        scheduler.step()
        return True

    def reference(self) -> contextlib.AbstractContextManager | None:
        """A context in which ``self.model`` is the frozen reference policy, or None (separate model)."""
        return None

    # -------------------------------------------------------------- sync

    def export(self, version: int) -> Any:
        """Every weight (tied weights once) as one flat buffer, reused between syncs."""
        payload = pack(version, self.model.named_parameters(), out=self._buffer)
        self._buffer = payload.buffer
        return payload

    def reset_sync(self) -> None:
        """The receivers start from scratch (run resumed, weights written): the next export must be self-contained."""

    # -------------------------------------------------------------- weights for callbacks

    def weight_matrices(self) -> dict[str, torch.nn.Parameter]:
        """The weight matrices a callback may read and write, by checkpoint name (tied weights once)."""
        return {n: p for n, p in self.model.named_parameters() if p.dim() >= 2}

    @torch.no_grad()
    def read(self, kind: str) -> dict[str, Any]:
        """Copies of the effective weights (``merged``); other kinds belong to other modes. No side effects."""
        if kind != "merged":
            raise ValueError(f"learner.update={self.name} has no '{kind}' weights to read (it has: merged)")
        return {n: p.detach().float().cpu().clone() for n, p in self.weight_matrices().items()}

    @torch.no_grad()
    def write(self, weights: dict[str, torch.Tensor]) -> list[torch.nn.Parameter]:
        """Set effective weights; returns the parameters whose optimizer state no longer applies."""
        params = self.weight_matrices()
        unknown = sorted(set(weights) - set(params))
        if unknown:
            raise ValueError(f"cannot write weights {unknown[:3]}: not weight matrices of the model")
        for n, w in weights.items():
            params[n].copy_(w.to(params[n].dtype))
        return [params[n] for n in weights]

    # -------------------------------------------------------------- state

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass

    def save_model(self, out: Path) -> None:
        self.model.save_pretrained(out, safe_serialization=True)

    def load_model(self, src: Path) -> None:
        from rlpost.models.loading import read_weights

        weights = read_weights(src)
        missing, unexpected = self.model.load_state_dict(weights, strict=False)
        real_missing = [k for k in missing if not (k == "lm_head.weight" and self.model.config.tie_word_embeddings)]
        if real_missing or unexpected:
            raise RuntimeError(f"checkpoint {src} does not match the model: missing {real_missing}, unexpected {unexpected}")

    def plain_model(self) -> torch.nn.Module:
        """A plain transformers model with the trained weights (for save_hf and evaluation)."""
        return self.model

    def describe(self) -> dict[str, float]:
        total = sum(p.numel() for p in self.model.parameters())
        trained = sum(p.numel() for p in self.trainable())
        return {"update/trainable_params": float(trained), "update/total_params": float(total)}
