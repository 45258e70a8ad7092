"""Sparse-subnetwork updates: a fixed mask per matrix; only masked entries train and travel.

Matrices (2-D) are masked; 1-D tensors (norms, biases) train densely, as the spec advises. The
optimizer keeps state only for masked entries (MaskedAdamW), so unmasked weights stay bit-identical.
A sync sends the mask's indices once (with a dense anchor), then only the values at those indices.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from rlpost.config import Config
from rlpost.learner.modes.base import UpdateMode
from rlpost.learner.modes.masked_adamw import MaskedAdamW
from rlpost.learner.modes.masks import MaskError, SparseMask
from rlpost.learner.optim import with_schedule
from rlpost.models.loading import read_weights
from rlpost.sync import SparseSync, pack


def build_mask(cfg: Config, shapes: dict[str, tuple[int, ...]], current: dict[str, torch.Tensor]) -> SparseMask | None:
    """The mask the config asks for (None for grad_warmup: it is scored during training)."""
    c = cfg.learner.sparse
    if c.mask == "random":
        return SparseMask.random(shapes, c.density, c.seed)
    if c.mask == "file":
        if not c.file:
            raise MaskError("learner.sparse.mask=file needs learner.sparse.file")
        mask = SparseMask.load(c.file)
        mask.check_against(shapes, "the model")
        return mask
    if c.mask == "checkpoint_diff":
        if not (c.diff_base and c.diff_tuned):
            raise MaskError("learner.sparse.mask=checkpoint_diff needs learner.sparse.diff_base and diff_tuned")
        base, tuned = read_weights(c.diff_base), read_weights(c.diff_tuned)
        for name in shapes:
            if name not in base:
                raise MaskError(f"diff_base {c.diff_base} has no tensor '{name}'")
            if not torch.equal(base[name], current[name]):
                raise MaskError(f"diff_base {c.diff_base} is not this run's starting model (tensor '{name}' differs)")
        mask = SparseMask.from_diff({n: base[n] for n in shapes}, {n: tuned[n] for n in shapes if n in tuned}, c.diff_tol)
        mask.check_against(shapes, "the model")
        return mask
    return None


class SparseMode(UpdateMode):
    name = "sparse"

    def __init__(self, cfg: Config, model: torch.nn.Module) -> None:
        super().__init__(cfg, model)
        params = dict(model.named_parameters())
        self.matrices = {n: p for n, p in params.items() if p.dim() >= 2}
        shapes = {n: tuple(p.shape) for n, p in self.matrices.items()}
        self.mask = build_mask(cfg, shapes, {n: p.detach() for n, p in self.matrices.items()})
        self.warm_left = cfg.learner.sparse.warmup_steps if self.mask is None else 0
        self.scores = {n: torch.zeros_like(p, dtype=torch.float32) for n, p in self.matrices.items()} if self.warm_left else {}
        self.optimizer: MaskedAdamW | None = None
        self.needs_anchor = True
        self._values: np.ndarray | None = None

    def _masks(self) -> list[torch.Tensor | None]:
        names = [n for n, _ in self.model.named_parameters()]
        if self.mask is None:  # scoring: nothing trains yet
            return [torch.zeros(0, dtype=torch.long) if n in self.matrices else None for n in names]
        return [self.mask.indices[n] if n in self.matrices else None for n in names]

    def make_optimizer(self, total_steps: int):
        o = self.cfg.optim
        if o.name != "adamw":
            raise ValueError(f"learner.update=sparse trains with a masked AdamW; optim.name={o.name} is not supported")
        self.optimizer = MaskedAdamW(self.trainable(), self._masks(), o.lr, o.betas, o.eps, o.weight_decay)
        return self.optimizer, with_schedule(self.optimizer, total_steps, o.warmup_steps, o.schedule, o.min_lr_ratio)

    def gradient(self, p: torch.nn.Parameter) -> torch.Tensor | None:
        """The unmasked entries of ``p.grad`` (flat); all of them while the mask is still being scored."""
        return p.grad if self.warm_left else self.optimizer.masked_grad(p)

    def clip_grads(self, max_norm: float) -> torch.Tensor:
        """Norm over the entries that train only, so frozen entries do not use up the clipping budget."""
        if self.warm_left:
            return torch.nn.utils.clip_grad_norm_(self.trainable(), float("inf"))
        grads = [g for g in (self.optimizer.masked_grad(p) for p in self.trainable()) if g is not None]
        total = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads])) if grads else torch.tensor(0.0)
        coef = max_norm / (float(total) + 1e-6)
        if coef < 1.0 and torch.isfinite(total):
            for p in self.trainable():
                if p.grad is not None:
                    p.grad.mul_(coef)
        return total

    def step(self, optimizer, scheduler) -> bool:
        if not self.warm_left:
            return super().step(optimizer, scheduler)
        for name, p in self.matrices.items():  # grad_warmup: sum |grad|, no update
            if p.grad is not None:
                self.scores[name] += p.grad.detach().abs()
        self.warm_left -= 1
        if self.warm_left == 0:
            self.mask = SparseMask.from_scores(self.scores, self.cfg.learner.sparse.density, "grad_warmup")
            self.scores = {}
            self.optimizer.set_masks(self._masks())
        return False

    # -------------------------------------------------------------- sync

    @torch.no_grad()
    def export(self, version: int) -> Any:
        if self.mask is None:  # still scoring: weights have not changed, send them whole
            return super().export(version)
        names = list(self.mask.indices)
        total = self.mask.nnz()
        if self._values is None or self._values.size != total:
            self._values = np.empty(total, dtype=np.float32)
        out, offset = torch.from_numpy(self._values), 0
        for name in names:
            idx, flat = self.mask.indices[name], self.matrices[name].detach().reshape(-1)
            if flat.is_cuda:  # the mask lives on the CPU, the values come back to it
                out[offset : offset + idx.numel()].copy_(flat.index_select(0, idx.to(flat.device)))
            else:
                torch.index_select(flat, 0, idx, out=out[offset : offset + idx.numel()])
            offset += idx.numel()
        anchor = self.needs_anchor
        self.needs_anchor = False
        dense = [(n, p) for n, p in self.model.named_parameters() if n not in self.matrices]
        return SparseSync(
            version=version, mask_id=self.mask.fingerprint(), names=names, values=self._values,
            dense=pack(version, dense) if dense and not anchor else None,
            indices={n: self.mask.indices[n].numpy() for n in names} if anchor else None,
            anchor=pack(version, self.model.named_parameters()) if anchor else None,
        )

    def reset_sync(self) -> None:
        self.needs_anchor = True

    def write(self, weights: dict[str, torch.Tensor]) -> list[torch.nn.Parameter]:
        raise ValueError("learner.update=sparse cannot take written weights: a dense update would break the mask")

    # -------------------------------------------------------------- state

    def state_dict(self) -> dict[str, Any]:
        mask = None if self.mask is None else {"indices": self.mask.indices, "shapes": self.mask.shapes, "source": self.mask.source}
        return {"mask": mask, "warm_left": self.warm_left, "scores": self.scores}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        m = state["mask"]
        self.mask = None if m is None else SparseMask(m["indices"], m["shapes"], m["source"])
        self.warm_left, self.scores = state["warm_left"], state["scores"]
        if self.optimizer is not None:
            self.optimizer.set_masks(self._masks())

    def save_model(self, out: Path) -> None:
        super().save_model(out)
        if self.mask is not None:  # beside the model folder: reusable as learner.sparse.mask=file
            self.mask.save(out.parent / "mask.safetensors")

    def describe(self) -> dict[str, float]:
        d = super().describe()
        if self.mask is not None:
            d["update/density"] = self.mask.density()
        if self.optimizer is not None:
            d["update/optimizer_state_floats"] = float(self.optimizer.state_numel())
        return d
