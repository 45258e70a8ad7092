"""AdamW with linear warm-up and constant / linear / cosine decay, shared by SFT and RL."""
from __future__ import annotations

import math
from collections.abc import Iterable

import torch


def lr_factor(step: int, warmup: int, total: int, schedule: str, min_ratio: float) -> float:
    """Multiplier of the base lr at optimizer step `step` (0-based)."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    if schedule == "constant" or total <= warmup:
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    if schedule == "linear":
        decay = 1.0 - progress
    elif schedule == "cosine":
        decay = 0.5 * (1.0 + math.cos(math.pi * progress))
    else:
        raise ValueError(f"unknown lr schedule '{schedule}'")
    return min_ratio + (1.0 - min_ratio) * decay


def build_optimizer(
    params: Iterable[torch.nn.Parameter],
    lr: float,
    total_steps: int,
    warmup_steps: int = 0,
    schedule: str = "constant",
    min_lr_ratio: float = 0.0,
    weight_decay: float = 0.0,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    name: str = "adamw",
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    if name == "adamw":
        params = list(params)
        # The fused kernel is ~4x faster than the default multi-tensor one on CPU (9.1 -> 2.2 ms for
        # the 1M tiny model): a few percent of a tiny-model RL step.
        fused = all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in params)
        opt = torch.optim.AdamW(params, lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay, fused=fused or None)
    elif name == "sgd":  # momentum = betas[0]
        opt = torch.optim.SGD(list(params), lr=lr, momentum=betas[0], weight_decay=weight_decay)
    else:
        raise ValueError(f"unknown optimizer '{name}' (adamw | sgd)")
    return opt, with_schedule(opt, total_steps, warmup_steps, schedule, min_lr_ratio)


def with_schedule(
    opt: torch.optim.Optimizer, total_steps: int, warmup_steps: int = 0, schedule: str = "constant", min_lr_ratio: float = 0.0
) -> torch.optim.lr_scheduler.LambdaLR:
    """The warm-up + decay schedule on any optimizer (the masked AdamW of sparse updates too)."""
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, warmup_steps, total_steps, schedule, min_lr_ratio))
