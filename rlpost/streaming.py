"""Streamed steps: the learner computes gradients on part k of a step's prompts while the rollout
worker generates part k+1; one optimizer step at the end, on exactly the batch an unstreamed step
would build (same policy, same advantages), so the update stays on-policy.

The step's prompts are split into ``train.stream_parts`` parts of whole groups. Each finished part
is scored, run through the pipeline and sent to ``Learner.accumulate``; ``Learner.update`` on the
whole batch then divides the summed gradients by the batch's loss denominator and steps. Recipes
whose stages or rewards would see a part as if it were the whole batch are refused at start
(``stream_blockers``, from what each stage and reward declares); if the whole batch still differs
from its parts, the learner recomputes the update on the whole batch and warns.
"""
from __future__ import annotations

import time
from typing import Callable

from rlpost.algos.aggregation import aggregation_kwargs
from rlpost.config import AlgoConfig
from rlpost.rollout.samplers import finish_step, samples_in_rounds
from rlpost.scoring import Scorer, merge_metrics
from rlpost.types import Batch, Group, PromptItem, SamplingParams, Scored, pool_stats


def stream_blockers(algo: AlgoConfig, sampler, pipeline) -> list[str]:
    """Why this recipe cannot stream its steps (empty: it can)."""
    why = []
    if algo.epochs * algo.minibatches != 1:
        why.append(f"algo.epochs x algo.minibatches = {algo.epochs * algo.minibatches} (streaming needs one pass per batch)")
    if "norm" not in aggregation_kwargs(algo.aggregation, [[1.0]], 1):
        why.append(f"aggregation '{algo.aggregation}' has no batch denominator to defer")
    if samples_in_rounds(sampler):
        why.append(f"sampler '{type(sampler).__name__}' samples in several rounds")
    return why + pipeline.refusals(streamed=True)


def split_parts(keys: list[int], parts: int) -> list[list[int]]:
    """``keys`` in order, cut into at most ``parts`` contiguous runs of near-equal size."""
    parts = max(1, min(parts, len(keys)))
    size, extra = divmod(len(keys), parts)
    out, start = [], 0
    for i in range(parts):
        end = start + size + (1 if i < extra else 0)
        out.append(keys[start:end])
        start = end
    return out


def stream_groups(
    parts: int, sampler, rollout, learner, scorer: Scorer, items: dict[int, PromptItem], sampling: SamplingParams,
    build: Callable[[dict[int, Group]], Batch],
) -> tuple[dict[int, Group], dict[str, float]]:
    """Generate, score and hand over the step's groups part by part (see the module docstring);
    ``build`` turns groups into the pipeline's batch."""
    plist = list(items.values())
    requests = sampler.plan(plist)
    part_of = {k: i for i, keys in enumerate(split_parts(list(items), parts)) for k in keys}
    by_part: list[list] = [[] for _ in range(max(part_of.values(), default=-1) + 1)]
    for r in requests:
        by_part[part_of[r.key]].append(r)
    by_part = [reqs for reqs in by_part if reqs]
    members: dict[int, list[Scored]] = {k: [] for k in items}
    metrics: dict[str, float] = {}
    handed: list = []
    t_gen = time.perf_counter()
    pending = rollout.submit("generate", by_part[0], sampling) if by_part else None
    for i in range(len(by_part)):
        completions = rollout.result(pending, "generate")
        merge_metrics(metrics, {"time/gen": time.perf_counter() - t_gen})
        t_gen = time.perf_counter()
        # The next part generates while this one is scored and trained on.
        pending = rollout.submit("generate", by_part[i + 1], sampling) if i + 1 < len(by_part) else None
        scored, score_metrics = scorer.score(items, completions)
        merge_metrics(metrics, score_metrics)
        part: dict[int, list[Scored]] = {}
        for s in scored:
            members[s.completion.key].append(s)
            part.setdefault(s.completion.key, []).append(s)
        groups = {k: Group(items[k], ms, pool_stats(ms)) for k, ms in part.items()}
        handed.append(learner.submit("accumulate", build(groups).train_batch()))
    for future in handed:  # surfaces a learner error here, at this step
        learner.result(future, "accumulate")
    metrics.update({"rollout/rounds": 1.0, "rollout/stream_parts": float(len(by_part))})
    return finish_step(sampler, plist, members, metrics)
