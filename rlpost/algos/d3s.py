"""D3S, dynamic dual-level down-sampling (Wang et al. 2025, "Learning More with Less").

The rollout is unchanged; D3S trains on less of it, on two levels, both on a linear schedule
over training progress p (aggressive early, relaxed late):

- samples (``d3s_samples``, a select stage): keep the subset of rows whose advantages (computed on
  the full group, never recomputed) have the largest variance: per group (``mode: intra``, m = N(p)
  rows each) or pooled over the batch (``mode: cross``, m = groups x N(p) rows, ragged per prompt);
- tokens (``d3s_tokens``, a tokens stage): among the kept rows, give loss weight 1 to the top
  ceil(K(p) x valid tokens) tokens by ``|A| x entropy`` (the pre-update policy's, over the full
  vocabulary) and 0 to the rest. Loss denominators then count kept tokens only.

The exact max-variance solver (the best subset of size m is the k largest plus the m-k smallest
values for some k, Xu et al. 2025 "PODS") and the schedule's endpoint defaults are from
``shared/specs/reinforce_ada_and_d3s.md`` (part 2); endpoints there are a proposal, not the paper's.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from rlpost.algos.stage import STAGES, StageContext, StageInfo, stage
from rlpost.types import Batch


def linear_schedule(start: float, end: float, progress: float) -> float:
    """``(1 - p) * start + p * end``."""
    return (1.0 - progress) * start + progress * end


def round_half_up(x: float) -> int:
    return int(math.floor(x + 0.5))


def max_variance_subset(values: Tensor, m: int) -> Tensor:
    """Indices of the size-m subset of ``values`` [n] with the largest variance (all n when m >= n).

    Scans k = 0..m over "k largest + (m-k) smallest" with prefix sums. Variance ties prefer k
    closest to m/2, then the smaller k. Equal values are taken lowest index first, at both ends.
    """
    n = values.numel()
    if m >= n:
        return torch.arange(n)
    if m <= 0:
        return torch.zeros(0, dtype=torch.long)
    v = values.to(torch.float64)
    desc = torch.sort(v, descending=True, stable=True).indices
    sv = v[desc]
    zero = torch.zeros(1, dtype=torch.float64)
    s1, s2 = torch.cat([zero, sv.cumsum(0)]), torch.cat([zero, (sv * sv).cumsum(0)])
    ks = torch.arange(m + 1)
    # top k: sv[:k]; bottom m-k: sv[n-(m-k):]
    total = s1[ks] + (s1[n] - s1[n - (m - ks)])
    total_sq = s2[ks] + (s2[n] - s2[n - (m - ks)])
    var = total_sq / m - (total / m) ** 2
    best_var = float(var.max())
    tied = [k for k in range(m + 1) if float(var[k]) >= best_var - 1e-12 * max(1.0, abs(best_var))]
    k = min(tied, key=lambda k: (abs(k - m / 2), k))
    top = desc[:k]
    rest = desc[k:].sort().values  # by index, so that the stable sort below takes lower indices first
    asc = rest[torch.sort(v[rest], stable=True).indices]
    return torch.cat([top, asc[: m - k]]).sort().values


def topk_token_mask(scores: Tensor, valid: Tensor, count: int) -> Tensor:
    """[B, T] 0/1 mask of the ``count`` highest scores among valid positions; ties by (row, position)."""
    flat = torch.where(valid.flatten() > 0, scores.flatten().to(torch.float64), torch.tensor(float("-inf"), dtype=torch.float64))
    count = min(count, int((valid > 0).sum()))
    order = torch.sort(flat, descending=True, stable=True).indices[:count]
    out = torch.zeros(flat.numel())
    out[order] = 1.0
    return out.view(scores.shape)


def _check_schedule(name: str, start: float, end: float, low: float, high: float | None) -> None:
    for label, x in ((f"{name}_init", start), (f"{name}_final", end)):
        if not isinstance(x, (int, float)) or x < low or (high is not None and x > high):
            bound = f"between {low} and {high}" if high is not None else f"a number >= {low}"
            raise ValueError(f"{label} must be {bound}, got {x!r}")


@STAGES.register("d3s_samples")
@stage("select", needs=("progress",))
class D3SSamples:
    """Select stage: keep the rows of largest advantage variance, N(p) = round_half_up(linear(n_init,
    n_final)) per prompt: per group (intra), or groups x N(p) rows pooled over the batch (cross). Groups
    counts the groups with kept rows when the stage runs (after a degenerate filter: the ones left), so
    cross mode keeps as many rows as intra mode would."""

    def __init__(self, mode: str = "cross", n_init: float = 4, n_final: float = 8) -> None:
        if mode not in ("intra", "cross"):
            raise ValueError(f"mode must be 'intra' or 'cross', got {mode!r}")
        _check_schedule("n", n_init, n_final, 1, None)
        self.mode, self.n_init, self.n_final = mode, n_init, n_final
        # cross-group selection pools the whole batch; intra-group selection looks at one group at a time
        self.stage_info = StageInfo("select", locality="batch" if mode == "cross" else "group", needs=("progress",))

    def __call__(self, batch: Batch, ctx: StageContext) -> None:
        n_keep = round_half_up(linear_schedule(self.n_init, self.n_final, ctx.progress))
        k = batch.keep.nonzero().flatten()
        adv = batch.advantages[k]
        gids = batch.group_ids[k]
        if self.mode == "cross":
            n_groups = int(torch.unique(gids).numel())
            chosen = k[max_variance_subset(adv, n_groups * n_keep)]
        else:
            parts = []
            for g in torch.unique(gids):
                idx = (gids == g).nonzero().flatten()
                parts.append(k[idx][max_variance_subset(adv[idx], n_keep)])
            chosen = torch.cat(parts) if parts else k
        batch.keep[:] = False
        batch.keep[chosen] = True
        kept_adv = batch.advantages[batch.keep]
        batch.metrics.update({
            "d3s/samples_per_prompt": float(n_keep),
            "d3s/usefulness": float((kept_adv.abs() > 1e-8).float().mean()) if kept_adv.numel() else 0.0,
        })


@STAGES.register("d3s_tokens")
@stage("tokens", locality="batch", needs=("entropy", "progress"))
class D3STokens:
    """Tokens stage: weight 1 on the top K(p) fraction of the kept rows' tokens by |A| x entropy, 0 elsewhere."""

    def __init__(self, k_init: float = 0.2, k_final: float = 0.5) -> None:
        _check_schedule("k", k_init, k_final, 0, 1)
        self.k_init, self.k_final = k_init, k_final

    def __call__(self, batch: Batch, ctx: StageContext) -> None:
        frac = linear_schedule(self.k_init, self.k_final, ctx.progress)
        batch.metrics["d3s/token_frac"] = frac
        if not bool(batch.keep.any()):  # every group filtered out: no learner pass ran, nothing to weight
            return
        valid = batch.mask * batch.keep[:, None]
        n_valid = int(valid.sum())
        count = max(1, math.ceil(frac * n_valid - 1e-9))
        scores = batch.advantages.abs()[:, None] * batch.entropy
        weights = topk_token_mask(scores, valid, count)
        batch.token_weights = weights if batch.token_weights is None else batch.token_weights * weights
