"""AdamW that keeps state only for the masked entries of each tensor and never writes the others.

Masking gradients alone is not enough with stock AdamW: decoupled weight decay shrinks frozen
weights every step, and momentum from earlier steps keeps moving entries whose gradient is now 0
(spec §5.6, tests 23-24). Here unmasked entries are simply never read or written.
"""
from __future__ import annotations

import math
from collections.abc import Iterable

import torch


class MaskedAdamW(torch.optim.Optimizer):
    """``masks[i]``: ascending flat indices that train in ``params[i]``, or None for a dense tensor."""

    def __init__(
        self,
        params: Iterable[torch.nn.Parameter],
        masks: list[torch.Tensor | None] | None = None,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:
        params = list(params)
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay))
        self.set_masks(masks if masks is not None else [None] * len(params))

    @property
    def params(self) -> list[torch.nn.Parameter]:
        return [p for g in self.param_groups for p in g["params"]]

    def set_masks(self, masks: list[torch.Tensor | None]) -> None:
        """Install masks (one per parameter, in order); resets the optimizer state."""
        params = self.params
        if len(masks) != len(params):
            raise ValueError(f"{len(masks)} masks for {len(params)} parameters")
        masks = [m.to(p.device) if m is not None else None for p, m in zip(params, masks)]  # index where the weights are
        self.masks = dict(zip(params, masks))  # int32 indices where they fit: half the memory of int64
        self.state.clear()

    def masked_grad(self, p: torch.nn.Parameter) -> torch.Tensor | None:
        """The gradient entries that train (all of a dense tensor's)."""
        if p.grad is None:
            return None
        idx = self.masks[p]
        return p.grad.reshape(-1) if idx is None else p.grad.reshape(-1).index_select(0, idx)

    def state_numel(self) -> int:
        """Floats of optimizer state held (first and second moments)."""
        return sum(s["exp_avg"].numel() + s["exp_avg_sq"].numel() for s in self.state.values() if "exp_avg" in s)

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            lr, (b1, b2), eps, wd = group["lr"], group["betas"], group["eps"], group["weight_decay"]
            for p in group["params"]:
                g = self.masked_grad(p)
                if g is None:
                    continue
                idx = self.masks[p]
                flat = p.data.view(-1)
                # index_select / index_copy_ are several times faster than flat[idx] on CPU
                w = flat if idx is None else flat.index_select(0, idx)
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(w, dtype=torch.float32)
                    state["exp_avg_sq"] = torch.zeros_like(w, dtype=torch.float32)
                state["step"] += 1
                t = state["step"]
                m, v = state["exp_avg"], state["exp_avg_sq"]
                g = g.float()
                m.mul_(b1).add_(g, alpha=1 - b1)
                v.mul_(b2).addcmul_(g, g, value=1 - b2)
                new = w.float() * (1 - lr * wd)
                denom = (v.sqrt() / math.sqrt(1 - b2**t)).add_(eps)
                new.addcdiv_(m, denom, value=-lr / (1 - b1**t))
                if idx is None:
                    flat.copy_(new)
                else:
                    flat.index_copy_(0, idx.long(), new.to(flat.dtype))
        return None
