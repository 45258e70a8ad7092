"""The Learner actor: GRPO-family policy updates and weight export for the rollout workers."""
from __future__ import annotations

import dataclasses
import logging
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rlpost.algos import AGGREGATIONS, KL_ESTIMATORS, POLICY_LOSSES
from rlpost.algos.aggregation import aggregation_kwargs
from rlpost.algos.logprobs import token_logprobs
from rlpost.algos.rank_loss import digit_cross_entropy, digit_values, expected_scores, pairwise_logistic
from rlpost.config import Config
from rlpost.learner.data_parallel import RankGroup, digest, endpoint
from rlpost.learner.modes import build_update_mode
from rlpost.models.device import actor_device
from rlpost.models.forward import completion_logits, completion_logprobs, read_logprobs
from rlpost.models.loading import load_model, load_tokenizer
from rlpost.ranking.slots import digit_ids
from rlpost.types import SFTExample, TrainBatch, TrainSample

log = logging.getLogger("rlpost.learner")


def truncated_is_weights(learner_logp: torch.Tensor, rollout_logp: torch.Tensor, cap: float) -> torch.Tensor:
    """min(pi_learner / pi_rollout, cap) per token: corrects for rollout/learner mismatch (TIS)."""
    return torch.exp((learner_logp - rollout_logp).clamp(-20.0, 20.0)).clamp(max=cap).detach()


def _chunks(seq: list, size: int) -> list[list]:
    return [seq[i : i + size] for i in range(0, len(seq), size)]


def micro_batches(idx: list[int], samples: list[TrainSample], size: int) -> list[list[int]]:
    """``idx`` cut into micro-batches of ``size``; when it takes more than one, cut from the rows sorted by
    length (longest first, ties in order), so each forward pads to its own rows' length instead of the
    longest row of the whole batch. Same loss and gradients: the aggregation's denominators are the batch's."""
    if len(idx) <= size:
        return [idx]
    order = sorted(idx, key=lambda i: -(len(samples[i].prompt_ids) + len(samples[i].token_ids)))
    return _chunks(order, size)


@dataclass
class _Parts:
    """What ``Learner.accumulate`` has gathered for the current step."""

    samples: list[TrainSample] = field(default_factory=list)
    stats: dict[str, list[float]] = field(default_factory=dict)  # learner/loss: per micro-batch, denominator 1
    finite: bool = True
    seconds: float = 0.0

    def matches(self, samples: list[TrainSample]) -> bool:
        """Same samples, in order, with the same advantages and token weights as the step's whole batch."""
        return len(samples) == len(self.samples) and all(
            a.token_ids == b.token_ids and abs(a.advantage - b.advantage) <= 1e-6 * max(1.0, abs(b.advantage))
            and a.token_weights == b.token_weights
            for a, b in zip(self.samples, samples)
        )



def rank_pairs(examples: list[SFTExample]) -> int:
    """Ordered pairs (better gain, worse gain) within each ranking group of a batch: the ranking term's denominator."""
    by_group: dict[int, list[float]] = {}
    for e in examples:
        by_group.setdefault(e.group, []).extend(e.gains)
    return sum(sum(a > b for a in g for b in g) for g in by_group.values())


def sft_micro_batches(examples: list[SFTExample], size: int) -> list[list[int]]:
    """Indices in chunks of about ``size`` examples, each ranking group whole in one chunk (a group larger
    than ``size`` is a chunk of its own); examples without a group are chunked by length as the update does."""
    free = [i for i, e in enumerate(examples) if e.group < 0]
    groups: dict[int, list[int]] = {}
    for i, e in enumerate(examples):
        if e.group >= 0:
            groups.setdefault(e.group, []).append(i)
    chunks: list[list[int]] = []
    for members in groups.values():
        if chunks and len(chunks[-1]) + len(members) <= size:
            chunks[-1].extend(members)
        else:
            chunks.append(list(members))
    if free:
        chunks += micro_batches(free, [TrainSample(e.prompt_ids, e.target_ids, [], 0.0) for e in examples], size)
    return chunks


def reduce_stats(stats: dict[str, list[float]]) -> dict[str, float]:
    """One value per metric from its values over micro-batches (or ranks): the largest for ``*_max``, else the mean."""
    return {k: float(np.max(v) if k.endswith("_max") else np.mean(v)) for k, v in stats.items()}

class Learner:
    def __init__(self, cfg: Config, model_path: str) -> None:
        torch.set_num_threads(cfg.run.threads)
        torch.manual_seed(cfg.run.seed)
        self.cfg = cfg
        self.compute_dtype = getattr(torch, cfg.model.dtype)
        self.device = actor_device(cfg.model.device, cfg.cluster.learner_gpus)
        self.mode = build_update_mode(cfg, load_model(model_path, "float32", self.device).train())
        self.model = self.mode.model
        self.tokenizer = load_tokenizer(model_path)
        self.pad_id = int(self.tokenizer.pad_token_id)
        a = cfg.algo
        self.loss_fn = POLICY_LOSSES.get(a.policy_loss)
        self.aggregate = AGGREGATIONS.get(a.aggregation)
        self.kl_fn = KL_ESTIMATORS.get(a.kl_estimator) if a.kl_coef > 0 else None
        # The reference policy: the update mode's own view (LoRA: adapters off) or a frozen copy.
        self.ref_model = None
        if self.kl_fn and not self.mode.has_reference_view:
            self.ref_model = load_model(model_path, "float32", self.device).eval().requires_grad_(False)
        self.optimizer, self.scheduler = self.mode.make_optimizer(cfg.train.steps * a.epochs * a.minibatches)
        self.shuffle_gen = torch.Generator().manual_seed(cfg.run.seed + 1)
        self.version = 0
        self.nan_skips = 0
        self._parts: _Parts | None = None  # gradients of this step's streamed parts, not yet applied
        self.group: RankGroup | None = None  # set when this learner is one rank of a data-parallel group
        self._digit_ids: list[int] | None = None  # SFT's ranking term: the tokens of digits 0..9, on first use

    # ------------------------------------------------------------------ supervised

    def sft_step(self, examples: list[SFTExample]) -> dict[str, float]:
        """One supervised step: cross-entropy on the target tokens (the mean over the whole batch's target
        tokens) plus, with ``sft.rank_weight``, the ranking term over the examples' score slots (the mean
        over the batch's ordered pairs) and, with ``sft.point_weight``, the pointwise term there (the mean over
        the batch's slots); gradients accumulated over ``train.micro_batch_size`` chunks, a
        ranking group never split."""
        sc = self.cfg.sft
        tokens = sum(len(e.target_ids) for e in examples)
        ranking = sc.rank_weight > 0 and any(e.slots for e in examples)
        pairs = rank_pairs(examples) if ranking else 0
        slots = sum(len(e.slots) for e in examples)
        reading = pairs > 0 or (ranking and sc.point_weight > 0)  # the slots' logits are needed
        stats: dict[str, list[float]] = {}
        self.optimizer.zero_grad(set_to_none=True)
        sums, finite = {"ce": 0.0, "rank": 0.0, "point": 0.0}, True
        for chunk in sft_micro_batches(examples, self.cfg.train.micro_batch_size):
            part = [examples[i] for i in chunk]
            # an example whose scores are read in another completion (rank_ids) adds it as a row of the same forward,
            # sharing the prompt's pass; rank_row[i]: the row where example i's slots are
            n, extra, rank_row = len(part), [], []
            for r, e in enumerate(part):
                if reading and e.rank_ids:
                    rank_row.append(n + len(extra))
                    extra.append(e)
                else:
                    rank_row.append(r)
            # slots in the prompt (< 0, e.g. GroupRank's block ends) need the LM head at those positions only
            reads = sorted({s for e in part for s in e.slots if s < 0}) if reading else []
            with torch.autocast(self.device.type, dtype=self.compute_dtype, enabled=self.compute_dtype != torch.float32):
                logits, targets, mask = completion_logits(
                    self.model, [e.prompt_ids for e in part + extra], [e.target_ids for e in part] + [e.rank_ids for e in extra], self.pad_id,
                    reads=reads)
            ce = -(token_logprobs(logits[:n, len(reads):], targets[:n]) * mask[:n]).sum() / tokens
            loss = ce
            if reading:
                slot_logits, gains, groups = self._slot_reads(part, logits, rank_row, reads)
                if pairs:
                    scores = expected_scores(slot_logits, self._digit_ids, digit_values())
                    rank_sum = pairwise_logistic(scores, gains, groups, sc.rank_sigma)[0]
                    loss = loss + sc.rank_weight * rank_sum / pairs
                    sums["rank"] += rank_sum.item() / pairs
                if sc.point_weight > 0:
                    point_sum = digit_cross_entropy(slot_logits, self._digit_ids, digit_values(), gains)
                    loss = loss + sc.point_weight * point_sum / slots
                    sums["point"] += point_sum.item() / slots
            finite = finite and bool(torch.isfinite(loss))
            if finite:
                loss.backward()
            sums["ce"] += ce.item()
        self._step(finite, stats)
        self.version += 1
        out = {"loss": sums["ce"] + sc.rank_weight * sums["rank"] + sc.point_weight * sums["point"], "ce": sums["ce"], "lr": self.scheduler.get_last_lr()[0],
               "grad_norm": stats.get("learner/grad_norm", [float("nan")])[0]}
        if ranking:
            out.update(rank=sums["rank"], rank_pairs=pairs)
            if sc.point_weight > 0:
                out.update(point=sums["point"])
        return out

    def _slot_reads(self, part: list[SFTExample], logits: torch.Tensor, rows_of: list[int], reads: list[int]
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """This micro-batch's score slots (its ranking groups are whole): their logits [K, V], gold gains [K] and
        groups [K]; example i's slots are read in row ``rows_of[i]`` of ``logits``, whose first columns are the
        prompt offsets ``reads``."""
        if self._digit_ids is None:
            self._digit_ids = digit_ids(self.tokenizer)
        rows = [rows_of[i] for i, e in enumerate(part) for _ in e.slots]
        col_of = {c: i for i, c in enumerate(reads)}
        cols = [col_of[c] if c < 0 else c + len(reads) for e in part for c in e.slots]
        gains = torch.tensor([g for e in part for g in e.gains], device=logits.device)
        groups = torch.tensor([e.group for e in part for _ in e.slots], device=logits.device)
        return logits[rows, cols], gains, groups

    # ------------------------------------------------------------------ update

    def _forward(self, model, samples: list[TrainSample], temperature: float, entropy: bool = False):
        # Weights stay fp32 (the master copy every update mode trains); model.dtype=bfloat16/float16
        # runs the forward and backward in that precision, as the rollout engine does.
        device = next(model.parameters()).device.type
        prompts, tokens = [s.prompt_ids for s in samples], [s.token_ids for s in samples]
        with torch.autocast(device, dtype=self.compute_dtype, enabled=self.compute_dtype != torch.float32):
            if samples[0].reads is not None:  # choices at prompt positions (a step's samples are all one kind)
                return read_logprobs(model, prompts, [s.reads for s in samples], tokens, [s.choices for s in samples], self.pad_id,
                                     temperature=temperature, with_entropy=entropy)
            return completion_logprobs(model, prompts, tokens, self.pad_id, temperature=temperature, with_entropy=entropy)

    @torch.no_grad()
    def _logprobs_no_grad(
        self, model, samples: list[TrainSample], temperature: float, entropy: bool = False
    ) -> tuple[list[torch.Tensor], list[torch.Tensor] | None]:
        out: list = [None] * len(samples)
        ent: list | None = [None] * len(samples) if entropy else None
        for chunk in micro_batches(list(range(len(samples))), samples, self.cfg.train.micro_batch_size):
            logp, mask, h = self._forward(model, [samples[i] for i in chunk], temperature, entropy=entropy)
            for row, i in enumerate(chunk):
                out[i] = logp[row, : len(samples[i].token_ids)]
                if ent is not None:
                    ent[i] = h[row, : len(samples[i].token_ids)]
        return out, ent

    def prepare(self, batch: TrainBatch, entropy: bool = False) -> dict[str, list[np.ndarray]]:
        """One no-grad pass of the current (pre-update) policy: per-token log-probs of every sample's
        completion, and the full-vocabulary entropy at each position when asked. ``update`` uses
        samples' ``old_logprobs`` instead of computing them again."""
        logp, ent = self._logprobs_no_grad(self.model, batch.samples, batch.temperature, entropy)
        out = {"old_logprobs": [t.float().cpu().numpy() for t in logp]}
        if ent is not None:
            out["entropy"] = [t.float().cpu().numpy() for t in ent]
        return out

    def _reference_logprobs(self, samples: list[TrainSample], temperature: float) -> list[torch.Tensor]:
        if self.ref_model is not None:
            return self._logprobs_no_grad(self.ref_model, samples, temperature)[0]
        with self.mode.reference():
            return self._logprobs_no_grad(self.model, samples, temperature)[0]

    def ready(self) -> bool:
        return True

    def update(self, batch: TrainBatch) -> dict[str, float]:
        """Several optimizer passes over the batch with old logprobs fixed once before the first
        (taken from the samples when ``prepare`` computed them, else computed here when needed).

        When the step was streamed (``accumulate`` called on its parts), the summed part gradients
        are divided by the batch's denominator and applied: the same single update, already computed.
        """
        a, samples = self.cfg.algo, batch.samples
        parts, self._parts = self._parts, None
        if parts is not None:
            if parts.matches(samples):
                return self._apply_parts(parts, batch)
            log.warning(
                "streamed parts (%d samples) differ from the step's batch (%d samples; advantages or "
                "selection depend on the whole batch?): recomputing the update on the whole batch",
                len(parts.samples), len(samples),
            )
        if not samples:
            return {"learner/skipped_empty": 1.0}
        t0 = time.perf_counter()
        passes = a.epochs * a.minibatches
        old = None
        if all(s.old_logprobs is not None for s in samples):  # from prepare (its own forward: ratio ~1 on pass 1)
            old = [torch.tensor(s.old_logprobs, dtype=torch.float32, device=self.device) for s in samples]
        elif passes > 1:  # with one pass and nothing prepared, old = the pass's own detached logprobs (ratio 1)
            old = self._logprobs_no_grad(self.model, samples, batch.temperature)[0]
        ref = self._reference_logprobs(samples, batch.temperature) if self.kl_fn else None
        t_old = time.perf_counter() - t0

        stats: dict[str, list[float]] = {}
        order = list(range(len(samples)))
        for epoch in range(a.epochs):
            if epoch > 0:
                order = torch.randperm(len(samples), generator=self.shuffle_gen).tolist()
            mb_size = -(-len(samples) // a.minibatches)
            for mb in _chunks(order, mb_size):
                self._optimizer_step(samples, mb, old, ref, batch, stats, first=(epoch == 0))
        metrics = self._metrics(stats, samples)
        metrics.update({
            "time/old_logprob": t_old,
            "time/update": time.perf_counter() - t0 - t_old,
        })
        self.version += 1
        return metrics

    def accumulate(self, part: TrainBatch) -> dict[str, float]:
        """Gradients of one streamed part of this step's batch, summed over parts (``update`` applies them).

        Parts are aggregated with denominator 1; ``update`` divides by the whole batch's denominator,
        which the supported aggregations are linear in, so the result equals one pass over the batch.
        """
        t0 = time.perf_counter()
        if self._parts is None:
            self.optimizer.zero_grad(set_to_none=True)
            self._parts = _Parts()
        parts = self._parts
        parts.samples += part.samples
        if part.samples and parts.finite:
            idx = list(range(len(part.samples)))
            ref = self._reference_logprobs(part.samples, part.temperature) if self.kl_fn else None
            kwargs = {**self._aggregation_kwargs(part.samples, part.max_new_tokens), "norm": 1.0}
            parts.finite = self._backward(part.samples, idx, None, ref, part, parts.stats, True, kwargs, kwargs)
        parts.seconds += time.perf_counter() - t0
        return {"samples": float(len(part.samples))}

    def _apply_parts(self, parts: _Parts, batch: TrainBatch) -> dict[str, float]:
        t0 = time.perf_counter()
        if not parts.samples:
            return {"learner/skipped_empty": 1.0}
        norm = self._aggregation_kwargs(parts.samples, batch.max_new_tokens)["norm"]
        scale = 1.0 / norm if norm else 1.0
        for p in self.mode.trainable():
            if p.grad is not None:
                p.grad.mul_(scale)
        stats = parts.stats
        stats["learner/loss"] = [sum(stats.get("learner/loss", [])) * scale]  # the whole batch's loss
        self._step(parts.finite, stats)
        metrics = self._metrics(stats, parts.samples)
        metrics.update({"time/old_logprob": 0.0, "time/update": parts.seconds + time.perf_counter() - t0})
        self.version += 1
        return metrics

    def _aggregation_kwargs(self, samples: list[TrainSample], max_new_tokens: int, weighted: bool = True) -> dict:
        """Denominators for ``samples``: from their token weights (the loss), or from all their tokens (KL)."""
        weights = [s.token_weights if weighted and s.token_weights is not None else [1.0] * len(s.token_ids) for s in samples]
        return aggregation_kwargs(self.cfg.algo.aggregation, weights, max_new_tokens)

    def _optimizer_step(self, samples, idx, old, ref, batch, stats, first: bool) -> None:
        chosen = [samples[i] for i in idx]
        agg_kwargs = self._aggregation_kwargs(chosen, batch.max_new_tokens)  # the minibatch's, on every rank
        kl_kwargs = self._aggregation_kwargs(chosen, batch.max_new_tokens, weighted=False)
        self.optimizer.zero_grad(set_to_none=True)
        mine = self.group.share(idx, samples) if self.group else idx
        finite = self._backward(samples, mine, old, ref, batch, stats, first, agg_kwargs, kl_kwargs)
        self._step(finite, stats)

    def _backward(self, samples, idx, old, ref, batch, stats, first: bool, agg_kwargs: dict, kl_kwargs: dict) -> bool:
        """Forward/backward over ``samples[idx]`` in micro-batches; False at a non-finite loss.

        The policy loss counts each token by its weight; the KL term counts every completion token.
        """
        a = self.cfg.algo
        for chunk in micro_batches(idx, samples, self.cfg.train.micro_batch_size) if idx else []:
            cs = [samples[i] for i in chunk]
            logp, valid, entropy = self._forward(self.model, cs, batch.temperature, entropy=first)
            T = valid.shape[1]
            mask = valid
            if any(s.token_weights is not None for s in cs):
                mask = self._pad([torch.tensor(s.token_weights if s.token_weights is not None else [1.0] * len(s.token_ids))
                                  for s in cs], T)
            old_t = self._pad([old[i] for i in chunk], T) if old is not None else logp.detach()
            roll = self._pad([torch.tensor(s.rollout_logprobs) for s in cs], T)
            adv = torch.tensor([s.advantage for s in cs], dtype=torch.float32, device=self.device)
            is_w = truncated_is_weights(old_t, roll, a.tis_cap) if a.tis_cap is not None else None
            loss, m = self.loss_fn(
                logp, old_t, adv, mask, clip_low=a.clip_low, clip_high=a.clip_high, dual_clip=a.dual_clip,
                aggregation=a.aggregation, agg_kwargs=agg_kwargs, is_weights=is_w,
            )
            if is_w is not None:
                counted = mask > 0
                m["tis_weight_mean"] = float(is_w[counted].mean()) if counted.any() else 1.0
                m["tis_truncated_frac"] = float((is_w[counted] >= a.tis_cap).float().mean()) if counted.any() else 0.0
            if ref is not None:
                kl_tok = self.kl_fn(logp, self._pad([ref[i] for i in chunk], T))
                kl = self.aggregate(kl_tok, valid, **kl_kwargs)
                loss = loss + a.kl_coef * kl
                m["kl"] = float((kl_tok.detach() * valid).sum() / valid.sum().clamp(min=1))
            if not torch.isfinite(loss):
                return False
            loss.backward()
            on_policy = torch.tensor([s.policy_version == self.version for s in cs], device=self.device)[:, None]
            self._record(stats, m, loss.item(), old_t, roll, valid, on_policy, entropy, first, [s.worker for s in cs])
        return True

    def _step(self, finite: bool, stats: dict[str, list[float]]) -> None:
        """Clip and apply the accumulated gradients (summed over the group's ranks first), or skip the
        update when anything was non-finite."""
        if self.group is not None:
            t0 = time.perf_counter()  # the all-reduce, and waiting for the slowest rank to get there
            finite = self.group.reduce_gradients(list(self.mode.trainable()), finite)
            stats.setdefault("time/allreduce", []).append(time.perf_counter() - t0)
        grad_norm = self.mode.clip_grads(self.cfg.optim.grad_clip) if finite else torch.tensor(float("nan"))
        if not torch.isfinite(grad_norm):
            self.nan_skips += 1
            log.warning("non-finite loss or gradient: update skipped (%d so far)", self.nan_skips)
            self.optimizer.zero_grad(set_to_none=True)
            return
        stepped = self.mode.step(self.optimizer, self.scheduler)
        stats.setdefault("learner/grad_norm", []).append(float(grad_norm))
        stats.setdefault("learner/stepped", []).append(float(stepped))

    def _record(self, stats, m, loss, old_t, roll, mask, on_policy, entropy, first, workers: list[int]) -> None:
        for k, v in m.items():
            stats.setdefault(f"learner/{k}", []).append(v)
        stats.setdefault("learner/loss", []).append(loss)
        if first:  # rollout/learner mismatch and entropy of the policy that generated the batch
            binary = (mask > 0).float()
            stats.setdefault("learner/padding_frac", []).append(float(1 - binary.mean()))  # completion positions that are padding
            gap = (old_t - roll).abs() * binary
            stats.setdefault("learner/logprob_mismatch", []).append(float(gap.sum() / binary.sum().clamp(min=1)))
            # Samples generated by the weights being trained must match exactly (stale sync, missed cache reset).
            on_gap = gap * on_policy
            stats.setdefault("learner/logprob_mismatch_max", []).append(float(on_gap.max()) if on_gap.numel() else 0.0)
            if any(workers):  # several rollout workers: each one's mismatch, so a lagging worker shows by name
                of = torch.tensor(workers, device=gap.device)
                for w in sorted(set(workers)):
                    rows = of == w
                    stats.setdefault(f"learner/logprob_mismatch_worker{w}", []).append(
                        float(gap[rows].sum() / binary[rows].sum().clamp(min=1)))
            if entropy is not None:
                stats.setdefault("learner/entropy", []).append(float((entropy * binary).sum() / binary.sum().clamp(min=1)))

    def _metrics(self, stats: dict[str, list[float]], samples: list[TrainSample]) -> dict[str, float]:
        metrics = reduce_stats(stats)
        metrics.update({
            "learner/lr": self.scheduler.get_last_lr()[0],
            "learner/nan_skips": float(self.nan_skips),
            # tokens with a non-zero loss weight (a tokens stage may zero some) and tokens through the forward
            "train/tokens": float(sum(len(s.token_ids) if s.token_weights is None else sum(w != 0 for w in s.token_weights) for s in samples)),
            "train/tokens_forward": float(sum(len(s.token_ids) for s in samples)),
            "train/samples": float(len(samples)),
        })
        return metrics

    def _pad(self, rows: list[torch.Tensor], T: int) -> torch.Tensor:
        out = torch.zeros((len(rows), T), dtype=torch.float32, device=self.device)
        for i, r in enumerate(rows):
            out[i, : len(r)] = r
        return out

    # ------------------------------------------------------------------ per-objective gradients

    def objective_gradients(
        self, batch: TrainBatch, advantages: list[list[float]], params: str = "", clip: float | None = None
    ) -> dict[str, Any]:
        """For each advantage vector (one per objective, aligned with ``batch.samples``): the policy
        loss's gradient at the current weights (KL term included), clipped to global norm ``clip``
        (default optim.grad_clip) over everything that trains, then restricted to the trainable
        parameters whose names match the regex ``params`` (all when empty). Returns their Gram matrix
        ``gram[i][j] = <g_i, g_j>``, the learning rate the next update will use, and the cost. Nothing
        is stepped; the gradients are cleared afterwards.
        """
        t0 = time.perf_counter()
        named = [(n, p) for n, p in self.model.named_parameters() if p.requires_grad]
        target = [p for n, p in named if re.search(params, n)]
        if not target:
            raise ValueError(f"no trainable parameter name matches params={params!r} (names look like {[n for n, _ in named[:3]]})")
        samples = batch.samples
        ref = self._reference_logprobs(samples, batch.temperature) if self.kl_fn else None
        agg = self._aggregation_kwargs(samples, batch.max_new_tokens)
        kl = self._aggregation_kwargs(samples, batch.max_new_tokens, weighted=False)
        idx = list(range(len(samples)))
        grads = []
        for adv in advantages:
            self.optimizer.zero_grad(set_to_none=True)
            own = [dataclasses.replace(s, advantage=float(a)) for s, a in zip(samples, adv)]
            finite = self._backward(own, idx, None, ref, batch, {}, False, agg, kl)
            norm = self.mode.clip_grads(self.cfg.optim.grad_clip if clip is None else clip) if finite else torch.tensor(float("nan"))
            parts = [self.mode.gradient(p) for p in target]
            flat = torch.cat([g.reshape(-1) if g is not None else torch.zeros(0, device=self.device) for g in parts])
            grads.append(flat if torch.isfinite(norm) else torch.full_like(flat, float("nan")))
        self.optimizer.zero_grad(set_to_none=True)
        stacked = torch.stack(grads).double().cpu()
        return {
            "gram": (stacked @ stacked.T).tolist(), "lr": self.scheduler.get_last_lr()[0],
            "seconds": time.perf_counter() - t0, "bytes": stacked.numel() * 4,
        }

    # ------------------------------------------------------------------ sync and parity

    def export_weights(self) -> Any:
        """What the rollout workers need to catch up: a payload of the update mode's kind."""
        return self.mode.export(self.version)

    def describe(self) -> dict[str, float]:
        return self.mode.describe()

    # ------------------------------------------------------------------ weights for callbacks

    def read_weights(self, kind: str = "merged") -> dict[str, Any]:
        """Copies of the weight matrices (``merged``: effective weights; ``lora``: (A, B, scale) per
        adapted layer), leaving training and the sync state untouched."""
        return self.mode.read(kind)

    def write_weights(self, weights: dict[str, torch.Tensor]) -> dict[str, float]:
        """New effective weights (LoRA: a rebase). The optimizer moments of what changed restart,
        the lr schedule goes on, the next sync sends every weight, and the policy version moves on."""
        for p in self.mode.write(weights):
            self.optimizer.state.pop(p, None)
        if self._parts is not None:  # streamed gradients taken at the old weights: update() recomputes
            self._parts = None
            self.optimizer.zero_grad(set_to_none=True)
        self.mode.reset_sync()
        self.version += 1
        return {"written": float(len(weights))}

    def request_full_sync(self) -> None:
        """The next export carries every weight (a self-contained anchor), not only what changed."""
        self.mode.reset_sync()

    @torch.no_grad()
    def logprobs(self, sequences: list[tuple[list[int], list[int]]], temperature: float = 1.0) -> list[list[float]]:
        samples = [TrainSample(p, c, [], 0.0) for p, c in sequences]
        return [t.tolist() for t in self._logprobs_no_grad(self.model, samples, temperature)[0]]

    # ------------------------------------------------------------------ data-parallel group

    def endpoint(self) -> str:
        """Where this learner, as rank 0, takes the other ranks' connections (host:port)."""
        return endpoint()

    def join_group(self, rank: int, world: int, address: str) -> bool:
        """Become rank ``rank`` of ``world`` (rank 0 listens at ``address``), starting from rank 0's weights."""
        self.group = RankGroup(rank, world, address, self.device)
        self.group.broadcast_from_first(list(self.model.parameters()) + list(self.model.buffers()))
        return True

    def weights_digest(self) -> str:
        """A hash of every weight: the group's ranks must agree bitwise after every step."""
        return digest(list(self.model.parameters()))

    # ------------------------------------------------------------------ checkpoint

    def save(self, path: str) -> None:
        out = Path(path)
        out.mkdir(parents=True, exist_ok=True)
        self.mode.save_model(out / "model")
        self.tokenizer.save_pretrained(out / "model")
        torch.save(
            {
                "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "torch_rng": torch.get_rng_state(), "shuffle_gen": self.shuffle_gen.get_state(),
                "version": self.version, "nan_skips": self.nan_skips, "mode": self.mode.state_dict(),
            },
            out / "learner_state.pt",
        )

    def load(self, path: str) -> None:
        src = Path(path)
        self.mode.load_model(src / "model")
        state = torch.load(src / "learner_state.pt", weights_only=False)
        self.mode.load_state_dict(state.get("mode", {}))  # before the optimizer: masks shape its state
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["torch_rng"])
        self.shuffle_gen.set_state(state["shuffle_gen"])
        self.version = state["version"]
        self.nan_skips = state["nan_skips"]
        self.mode.reset_sync()  # fresh rollout workers: the next sync must be self-contained

    def save_hf(self, path: str) -> None:
        from rlpost.sft import save_hf_folder

        save_hf_folder(self.mode.plain_model(), self.tokenizer, Path(path))
