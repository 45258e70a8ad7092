"""Per-token estimators of KL(pi || pi_ref) from sampled-token log-probs (Schulman's k1/k2/k3)."""
from __future__ import annotations

from typing import Callable

from torch import Tensor

from rlpost.registry import Registry

KLFn = Callable[[Tensor, Tensor], Tensor]
KL_ESTIMATORS: Registry[KLFn] = Registry("kl estimator")

# Bound on the log-ratio before exp(), so a token the reference finds near-impossible
# cannot produce inf (k3 is exponential in ref_logp - logp).
_MAX_LOG_RATIO = 20.0


@KL_ESTIMATORS.register("k1")
def k1(logp: Tensor, ref_logp: Tensor) -> Tensor:
    """``k1 = logp - ref_logp`` (unbiased, high variance, can be negative)."""
    return logp - ref_logp


@KL_ESTIMATORS.register("k2")
def k2(logp: Tensor, ref_logp: Tensor) -> Tensor:
    """``k2 = 0.5 * (logp - ref_logp)^2`` (verl's "mse"; biased, low variance, >= 0)."""
    return 0.5 * (logp - ref_logp) ** 2


@KL_ESTIMATORS.register("k3")
def k3(logp: Tensor, ref_logp: Tensor) -> Tensor:
    """``k3 = exp(d) - d - 1`` with ``d = clamp(ref_logp - logp, -20, 20)`` (verl's "low_var_kl"; >= 0)."""
    d = (ref_logp - logp).clamp(-_MAX_LOG_RATIO, _MAX_LOG_RATIO)
    return d.exp() - d - 1
