"""Hand-built batches for pipeline and stage tests: groups of scored completions, no model needed."""
from __future__ import annotations

import torch

from rlpost.types import Batch, Completion, Group, PromptItem, Scored, pool_stats


def make_batch(groups: list[list[float]], lengths: list[list[int]] | None = None, name: str = "correctness") -> Batch:
    """One group per list of rewards (key = its position); completion i of a group has lengths[g][i] tokens."""
    out = {}
    for key, rewards in enumerate(groups):
        item = PromptItem(key, key, {"question": f"q{key}", "answer": "1"}, [1, 2, key + 3], f"q{key}")
        members = []
        for i, r in enumerate(rewards):
            n = lengths[key][i] if lengths else 3
            c = Completion(key, item.prompt_ids, [4 + i] * n, "x", [-0.5] * n, "stop", 0)
            members.append(Scored(c, float(r), {name: float(r)}, bool(r > 0)))
        out[key] = Group(item, members, pool_stats(members))
    return Batch.from_groups(out, {name: 1.0}, temperature=1.0, max_new_tokens=8)


def with_old_logprobs(batch: Batch, per_row: list[list[float]], entropy: list[list[float]] | None = None) -> Batch:
    """Fill what learner.prepare would (every row) from hand-written per-token values."""
    batch.set_prepared(torch.arange(len(batch)), per_row, entropy)
    return batch
