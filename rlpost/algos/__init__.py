"""Pure tensor algorithms of the GRPO family, each in a named registry.

Look a component up by name or plug in your own with ``"pkg.module:fn"``::

    ADVANTAGES.get("grpo")(rewards, group_ids)
"""
from rlpost.algos.advantages import ADVANTAGES
from rlpost.algos.aggregation import AGGREGATIONS
from rlpost.algos.kl import KL_ESTIMATORS
from rlpost.algos.logprobs import entropy_from_logits, token_logprobs
from rlpost.algos.policy_loss import POLICY_LOSSES
from rlpost.algos.selection import SELECTORS

__all__ = [
    "ADVANTAGES",
    "AGGREGATIONS",
    "KL_ESTIMATORS",
    "POLICY_LOSSES",
    "SELECTORS",
    "entropy_from_logits",
    "token_logprobs",
]
