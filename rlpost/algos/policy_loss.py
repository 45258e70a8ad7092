"""Policy-gradient losses: log-probs and advantages -> (scalar loss, float metrics)."""
from __future__ import annotations

from typing import Any, Callable

import torch
from torch import Tensor

from rlpost.algos.aggregation import AGGREGATIONS
from rlpost.registry import Registry

PolicyLossFn = Callable[..., tuple[Tensor, dict[str, float]]]
POLICY_LOSSES: Registry[PolicyLossFn] = Registry("policy loss")

# Bound on |logp - old_logp| before exp(), as verl does, so one wild token cannot overflow.
_MAX_LOG_RATIO = 20.0


def _masked_mean(x: Tensor, mask: Tensor) -> float:
    denom = float(mask.sum())
    return float((x * mask).sum()) / denom if denom != 0 else 0.0


@POLICY_LOSSES.register("ppo_clip")
def ppo_clip(
    logprobs: Tensor,
    old_logprobs: Tensor,
    advantages: Tensor,
    mask: Tensor,
    *,
    clip_low: float = 0.2,
    clip_high: float = 0.2,
    dual_clip: float | None = None,
    aggregation: str = "token-mean",
    agg_kwargs: dict[str, Any] | None = None,
    is_weights: Tensor | None = None,
) -> tuple[Tensor, dict[str, float]]:
    """PPO clipped surrogate with clip-higher, optional dual-clip and IS weights.

    Per token, with ``rho = exp(logp - old_logp)``:
      ``l = max(-A * rho, -A * clip(rho, 1 - clip_low, 1 + clip_high))``;
      with ``dual_clip = c > 1`` and ``A < 0``: ``l = min(l, -A * c)`` (verl's dual-clip);
      with ``is_weights`` (detached here): ``l = w * l``.
    The per-token losses are reduced by ``AGGREGATIONS[aggregation](l, mask, **agg_kwargs)``.

    ``advantages`` is [B] (broadcast over tokens) or [B, T]. Metrics are masked means over
    tokens: ``clip_frac`` (the clipped branch is strictly larger, i.e. active),
    ``clip_frac_lower`` (dual-clip active), ``approx_kl`` (mean of ``old_logp - logp``),
    ``ratio_mean`` and ``ratio_max``.
    """
    if dual_clip is not None and dual_clip <= 1.0:
        raise ValueError(f"dual_clip must be > 1, got {dual_clip}")
    adv = advantages.unsqueeze(-1) if advantages.dim() == 1 else advantages
    mask = mask.to(logprobs.dtype)

    log_ratio = (logprobs - old_logprobs).clamp(-_MAX_LOG_RATIO, _MAX_LOG_RATIO)
    ratio = torch.exp(log_ratio)
    loss_unclipped = -adv * ratio
    loss_clipped = -adv * ratio.clamp(1.0 - clip_low, 1.0 + clip_high)
    per_token = torch.maximum(loss_unclipped, loss_clipped)
    clipped = loss_clipped > loss_unclipped

    dual_active = torch.zeros_like(clipped)
    if dual_clip is not None:
        loss_dual = -adv * dual_clip
        negative = (adv < 0).expand_as(per_token)
        dual_active = negative & (per_token > loss_dual)
        per_token = torch.where(negative, torch.minimum(per_token, loss_dual), per_token)

    if is_weights is not None:
        per_token = per_token * is_weights.detach()

    loss = AGGREGATIONS.get(aggregation)(per_token, mask, **(agg_kwargs or {}))

    with torch.no_grad():
        valid = mask != 0
        metrics = {
            "clip_frac": _masked_mean(clipped.to(mask.dtype), mask),
            "clip_frac_lower": _masked_mean(dual_active.to(mask.dtype), mask),
            "approx_kl": _masked_mean(-log_ratio, mask),
            "ratio_mean": _masked_mean(ratio, mask),
            "ratio_max": float(ratio[valid].max()) if bool(valid.any()) else 0.0,
        }
    return loss, metrics
