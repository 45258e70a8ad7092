"""The data that flows between components: requests, completions, scored groups, the driver-side batch
the pipeline works on, weight payloads, and the rows the learner trains on."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor


@dataclass
class SamplingParams:
    n: int = 1
    max_new_tokens: int = 16
    temperature: float = 1.0  # 0 means greedy
    top_p: float = 1.0
    top_k: int = 0
    stop: list[str] = field(default_factory=list)


@dataclass
class Request:
    """Generate `n` samples for one prompt (n overrides SamplingParams.n when set). With ``reads`` a sample
    is not generated: at each prompt position in ``reads`` it chooses one token of ``choices`` (the policy's
    distribution renormalised over them), with nothing appended: e.g. GroupRank's score at each block end."""

    prompt_ids: list[int]
    n: int | None = None
    key: Any = None  # caller's handle, e.g. the prompt's index in the step batch
    reads: list[int] | None = None
    choices: list[int] | None = None


@dataclass
class Completion:
    key: Any
    prompt_ids: list[int]
    token_ids: list[int]
    text: str
    logprobs: list[float]  # of the sampled tokens, under the temperature-scaled policy
    finish_reason: str  # "stop" (EOS or stop string) | "length"
    policy_version: int
    worker: int = 0  # the rollout worker that generated it (set by the pool)
    reads: list[int] | None = None  # token_ids[j] was chosen at prompt position reads[j] among ``choices`` (Request)
    choices: list[int] | None = None


@dataclass
class WeightPayload:
    """Weights for a rollout engine: one flat float32 buffer plus (name, shape, offset) specs.

    One numpy buffer moves through Ray's object store zero-copy (pickled tensors are ~10x slower).
    """

    version: int
    buffer: np.ndarray
    specs: list[tuple[str, tuple[int, ...], int]]
    # Only some tensors: the rest did not change since the last sync (engines that can, apply just these).
    partial: bool = False

    @property
    def nbytes(self) -> int:
        return int(self.buffer.nbytes)

    def tensors(self):
        import warnings

        with warnings.catch_warnings():  # read-only buffers from the object store; we only read them
            warnings.simplefilter("ignore", UserWarning)
            flat = torch.from_numpy(self.buffer)
        for name, shape, offset in self.specs:
            n = int(np.prod(shape)) if shape else 1
            yield name, flat[offset : offset + n].view(shape)


@dataclass
class PromptItem:
    """One prompt of a step: its key in the step, its dataset row and its encoding."""

    key: int  # position in this step's batch: the group id of its completions
    index: int  # position in the dataset
    record: dict[str, Any]
    prompt_ids: list[int]
    prompt_text: str
    reads: list[int] | None = None  # prompt positions whose choices are the samples (Request.reads)
    choices: list[int] | None = None

    def request(self, n: int) -> Request:
        """``n`` samples of this prompt, generated or chosen at its reads."""
        return Request(prompt_ids=self.prompt_ids, n=n, key=self.key, reads=self.reads, choices=self.choices)


@dataclass
class Scored:
    """A completion with what the verifiers and rewards said of it."""

    completion: Completion
    reward: float  # the recipe's weighted sum of the objectives; NaN when a verifier/reward failed
    objectives: dict[str, float]  # reward name -> value (the objective vector)
    correct: bool | None


@dataclass
class Group:
    """The completions of one prompt that reach the pipeline, and statistics of every sample drawn for it.

    A sampler may draw more than it keeps (adaptive rounds); ``stats`` describe the whole pool
    (``count``, ``reward_sum``, ``reward_sqsum``, ``positive``), so a baseline can use all of it.
    """

    item: PromptItem
    members: list[Scored]
    stats: dict[str, float] = field(default_factory=dict)


def pool_stats(members: list[Scored], threshold: float = 0.0) -> dict[str, float]:
    """count, reward_sum, reward_sqsum, positive (reward > threshold) over members with a known reward."""
    known = [s.reward for s in members if not np.isnan(s.reward)]
    return {
        "count": float(len(known)), "reward_sum": float(sum(known)),
        "reward_sqsum": float(sum(r * r for r in known)), "positive": float(sum(r > threshold for r in known)),
    }


@dataclass
class TrainSample:
    """One row the learner trains on."""

    prompt_ids: list[int]
    token_ids: list[int]
    rollout_logprobs: list[float]
    advantage: float
    policy_version: int = 0
    token_weights: list[float] | None = None  # per completion token (None: all 1); loss denominators come from these
    old_logprobs: list[float] | None = None  # from learner.prepare; None: the update computes them when it needs them
    worker: int = 0  # the rollout worker that generated it
    reads: list[int] | None = None  # as Completion.reads: token_ids are choices at these prompt positions
    choices: list[int] | None = None


@dataclass
class SFTExample:
    """One supervised example; ranking tasks also name the target's score slots (``sft.rank_weight``)."""

    prompt_ids: list[int]
    target_ids: list[int]
    slots: list[int] = field(default_factory=list)  # positions holding a score's first digit (in rank_ids, else the target; <= 0: the prompt's)
    gains: list[float] = field(default_factory=list)  # each slot's gold gain
    group: int = -1  # slots rank against the other slots of the same group in the batch
    rank_ids: list[int] = field(default_factory=list)  # the completion the ranking term reads, where not the target


@dataclass
class TrainBatch:
    samples: list[TrainSample]
    temperature: float = 1.0
    max_new_tokens: int = 16


@dataclass
class Batch:
    """A step's completions on the driver, rows in group order, and what the pipeline computes on them.

    Row tensors are [B], token tensors [B, T] (T: the longest completion). Stages read and write the
    fields; ``keep`` is the only way a row leaves (select stages clear it), so group structure and
    every row's statistics stay available to later stages and to the metrics.
    """

    groups: dict[int, Group]
    rows: list[Scored]
    group_ids: Tensor  # [B] long: the key of the row's prompt in this step
    objectives: Tensor  # [B, K] the objective vector as scored (never changed)
    objective_names: list[str]
    objective_weights: Tensor  # [K] the recipe's reward weights
    mask: Tensor  # [B, T] 1.0 on completion tokens
    temperature: float
    max_new_tokens: int
    shaped: Tensor  # [B, K] the objectives after the shape stages (starts as a copy)
    keep: Tensor  # [B] bool
    rewards: Tensor | None = None  # [B] scalar reward, from the combine stage
    advantages: Tensor | None = None  # [B], from the advantage stage
    advantage_scale: float = 1.0  # set by a combiner: multiplies the advantages right after the advantage stage
    token_weights: Tensor | None = None  # [B, T] loss weight per token (None: the mask)
    old_logprobs: Tensor | None = None  # [B, T] pre-update policy, from learner.prepare (rows in `prepared`)
    entropy: Tensor | None = None  # [B, T] of that policy, when a stage asked for it
    prepared: Tensor | None = None  # [B] bool: rows learner.prepare has filled
    metrics: dict[str, float] = field(default_factory=dict)

    @classmethod
    def from_groups(
        cls, groups: dict[int, Group], weights: dict[str, float], temperature: float, max_new_tokens: int
    ) -> "Batch":
        """Rows of every group in key order; a row whose reward is unknown (NaN) is left out (it was counted)."""
        rows, gids = [], []
        for key in sorted(groups):
            for s in groups[key].members:
                if not np.isnan(s.reward):
                    rows.append(s)
                    gids.append(key)
        names = list(rows[0].objectives) if rows else list(weights)
        objectives = torch.tensor([[s.objectives[n] for n in names] for s in rows], dtype=torch.float32).reshape(len(rows), len(names))
        T = max([len(s.completion.token_ids) for s in rows] + [1])
        mask = torch.zeros(len(rows), T)
        for i, s in enumerate(rows):
            mask[i, : len(s.completion.token_ids)] = 1.0
        return cls(
            groups=groups, rows=rows, group_ids=torch.tensor(gids, dtype=torch.long), objectives=objectives,
            objective_names=names, objective_weights=torch.tensor([weights.get(n, 0.0) for n in names], dtype=torch.float32),
            mask=mask, temperature=temperature, max_new_tokens=max_new_tokens, shaped=objectives.clone(),
            keep=torch.ones(len(rows), dtype=torch.bool),
        )

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def raw_rewards(self) -> Tensor:
        """[B] the recipe's weighted sum of the objectives as scored (before any shaping)."""
        return torch.tensor([s.reward for s in self.rows], dtype=torch.float32)

    def set_prepared(self, rows: Tensor, old_logprobs: list, entropy: list | None) -> None:
        """Store learner.prepare's per-token results for the row indices ``rows``."""
        if self.old_logprobs is None:
            self.old_logprobs, self.prepared = torch.zeros(self.mask.shape), torch.zeros(len(self), dtype=torch.bool)
        if entropy is not None and self.entropy is None:
            self.entropy = torch.zeros(self.mask.shape)
        for j, i in enumerate(rows.tolist()):
            n = len(old_logprobs[j])
            self.old_logprobs[i, :n] = torch.as_tensor(old_logprobs[j], dtype=torch.float32)
            if entropy is not None:
                self.entropy[i, :n] = torch.as_tensor(entropy[j], dtype=torch.float32)
        self.prepared[rows] = True

    def train_batch(self, rows: Tensor | None = None) -> TrainBatch:
        """The learner's view of ``rows`` (default: the kept rows): tokens, advantages, weights, old logprobs."""
        idx = (self.keep.nonzero().flatten() if rows is None else rows).tolist()
        samples = []
        for i in idx:
            c = self.rows[i].completion
            n = len(c.token_ids)
            samples.append(TrainSample(
                c.prompt_ids, c.token_ids, c.logprobs,
                float(self.advantages[i]) if self.advantages is not None else 0.0,
                policy_version=c.policy_version, worker=c.worker, reads=c.reads, choices=c.choices,
                token_weights=self.token_weights[i, :n].tolist() if self.token_weights is not None else None,
                old_logprobs=self.old_logprobs[i, :n].tolist() if self.prepared is not None and self.prepared[i] else None,
            ))
        return TrainBatch(samples, self.temperature, self.max_new_tokens)
