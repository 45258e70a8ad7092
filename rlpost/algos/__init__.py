"""The algorithm parts of the GRPO family: pure tensor functions, and the pipeline stages and losses
built on them, each in a named registry.

Look a component up by name or plug in your own with ``"pkg.module:fn"`` / ``"file.py:fn"``::

    STAGES.get("grpo"), POLICY_LOSSES.get("ppo_clip"), AGGREGATIONS.get("token-mean")
"""
from rlpost.algos import advantages, combine, d3s, reinforce_ada, selection, unlikeliness  # noqa: F401  (register the built-in stages)
from rlpost.algos.aggregation import AGGREGATIONS
from rlpost.algos.kl import KL_ESTIMATORS
from rlpost.algos.logprobs import entropy_from_logits, token_logprobs
from rlpost.algos.policy_loss import POLICY_LOSSES
from rlpost.algos.stage import STAGES, StageContext, StageInfo, stage

__all__ = [
    "AGGREGATIONS",
    "KL_ESTIMATORS",
    "POLICY_LOSSES",
    "STAGES",
    "StageContext",
    "StageInfo",
    "entropy_from_logits",
    "stage",
    "token_logprobs",
]
