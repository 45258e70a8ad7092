"""The RL loop: a single controller that sequences registered components on Ray actors."""
from __future__ import annotations

import json
import logging
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rlpost.actors import spawn, start_cluster
from rlpost.batch import build_batch
from rlpost.checkpoint import latest_checkpoint, load_controller_state, save_checkpoint
from rlpost.config import Config
from rlpost.data import PromptDataset
from rlpost.data.recipe import encode_prompts, load_split
from rlpost.evaluate import evaluate, print_table, write_result
from rlpost.learner.learner import Learner
from rlpost.models.loading import load_tokenizer, resolve_model_path
from rlpost.rollout.samplers import SAMPLERS, PromptItem, Scored
from rlpost.rollout.worker import RolloutWorker
from rlpost.scoring import Scorer, merge_metrics
from rlpost.sft import run_sft
from rlpost.tracking import Tracker
from rlpost.types import SamplingParams

log = logging.getLogger("rlpost.controller")


class SyncError(RuntimeError):
    """Rollout and learner disagree on logprobs after a weight sync (stale or corrupt weights)."""


def train(cfg: Config, resume: bool = True) -> dict[str, Any]:
    run_dir = cfg.output_dir
    seed_everything(cfg.run.seed, cfg.run.threads)
    # Everything that can be wrong with the recipe or data fails here, before a model loads.
    records = load_split(cfg, cfg.data.train_split, sft=cfg.train.warm_start == "sft")
    eval_records = load_split(cfg, cfg.eval.split or cfg.data.eval_split, limit=cfg.eval.limit)
    check_components(cfg)
    scorer = Scorer(cfg)
    sampler = SAMPLERS.get(cfg.sampler.name)(n=cfg.rollout.n, **cfg.sampler.kwargs)

    policy = str(run_sft(cfg) if cfg.train.warm_start == "sft" else resolve_model_path(cfg.model))
    tokenizer = load_tokenizer(policy)
    prompt_texts, prompt_ids = encode_prompts(cfg, records, tokenizer)
    start_cluster(cfg.cluster)
    learner = spawn(Learner, cfg.cluster, "learner", cfg, policy)
    rollout = spawn(RolloutWorker, cfg.cluster, "rollout", cfg, policy)
    learner.call("ready"), rollout.call("ready")  # actor start-up is not charged to step 0
    dataset = PromptDataset(records, seed=cfg.run.seed)
    sampling = SamplingParams(
        n=cfg.rollout.n, max_new_tokens=cfg.rollout.max_new_tokens, temperature=cfg.rollout.temperature,
        top_p=cfg.rollout.top_p, top_k=cfg.rollout.top_k, stop=list(cfg.rollout.stop),
    )

    state: dict[str, Any] = {"step": 0, "evals": {}}
    ckpt = latest_checkpoint(run_dir) if resume else None
    if ckpt is not None:
        state = resume_from(ckpt, learner, rollout, dataset, sampler)
        log.info("resumed from %s at step %d", ckpt, state["step"])

    def run_eval(label: str) -> dict[str, Any]:
        result = evaluate(cfg, EngineView(rollout), tokenizer, scorer.runner, eval_records)
        state["evals"][label] = result
        write_result(result, run_dir / f"eval_{label}.json")
        return result

    prompts = (dataset, cfg.train.prompts_per_step, prompt_texts, prompt_ids)
    tracker = Tracker(run_dir, cfg.log, cfg.train.steps, start_step=state["step"])
    try:
        if cfg.train.eval_before and "before" not in state["evals"]:
            tracker.print(f"eval before RL: {run_eval('before')}")
        pending = state.pop("pending", None)
        for step in range(state["step"], cfg.train.steps):
            t0 = time.perf_counter()
            groups, metrics = pending or collect_groups(sampler, rollout, scorer, next_items(*prompts), sampling)
            batch, batch_metrics = build_batch(cfg, groups)
            metrics.update(batch_metrics)
            update = learner.submit("update", batch)
            pending = None
            if cfg.train.async_rollout and step + 1 < cfg.train.steps:
                # The next step's rollouts come from the pre-update policy while the learner trains.
                pending = collect_groups(sampler, rollout, scorer, next_items(*prompts), sampling)
            t_wait = time.perf_counter()
            metrics.update(learner.result(update))
            metrics["time/wait"] = time.perf_counter() - t_wait
            metrics.update(sync_weights(cfg, learner, rollout, batch, step))
            state["step"], state["pending"] = step + 1, pending
            metrics["time/step"] = time.perf_counter() - t0
            if cfg.train.eval_every and (step + 1) % cfg.train.eval_every == 0 and step + 1 < cfg.train.steps:
                metrics.update({f"eval/{k}": v for k, v in run_eval(f"step{step + 1}").items() if isinstance(v, float)})
            tracker.log(step, metrics)
            if cfg.train.save_every and (step + 1) % cfg.train.save_every == 0:
                checkpoint(cfg, run_dir, learner, rollout, dataset, sampler, state)
        if cfg.train.eval_after and "after" not in state["evals"]:
            run_eval("after")
        if ckpt is None or state["step"] > int(ckpt.name.split("_")[1]):
            checkpoint(cfg, run_dir, learner, rollout, dataset, sampler, state)
        learner.call("save_hf", str(run_dir / "final"))
    finally:
        tracker.close()
        scorer.close()
    summarize(run_dir, state)
    return state


# ---------------------------------------------------------------------- the loop's parts

def check_components(cfg: Config) -> None:
    """Resolve every named algorithm component now, so a typo fails before any model loads."""
    from rlpost.algos import ADVANTAGES, AGGREGATIONS, KL_ESTIMATORS, POLICY_LOSSES, SELECTORS
    from rlpost.rollout.worker import ENGINES, engine_name

    a = cfg.algo
    for registry, name in (
        (ADVANTAGES, a.advantage), (SELECTORS, a.selector), (POLICY_LOSSES, a.policy_loss),
        (AGGREGATIONS, a.aggregation), (KL_ESTIMATORS, a.kl_estimator), (SAMPLERS, cfg.sampler.name),
        (ENGINES, engine_name(cfg)),
    ):
        registry.get(name)


def seed_everything(seed: int, threads: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.set_num_threads(threads)


def next_items(dataset: PromptDataset, n: int, texts: list[str], ids: list[list[int]]) -> dict[int, PromptItem]:
    return {k: PromptItem(k, i, rec, ids[i], texts[i]) for k, (i, rec) in enumerate(dataset.next_batch(n))}


def collect_groups(sampler, rollout, scorer: Scorer, items: dict[int, PromptItem], sampling: SamplingParams):
    """Sampling rounds: generate, score, ask the sampler for more, until it asks for none."""
    groups: dict[int, list[Scored]] = {k: [] for k in items}
    metrics: dict[str, float] = {}
    plist = list(items.values())
    requests = sampler.plan(plist)
    rounds = 0
    while requests:
        t0 = time.perf_counter()
        completions = rollout.call("generate", requests, sampling)
        merge_metrics(metrics, {"time/gen": time.perf_counter() - t0})
        scored, score_metrics = scorer.score(items, completions)
        merge_metrics(metrics, score_metrics)
        for s in scored:
            groups[s.completion.key].append(s)
        rounds += 1
        requests = sampler.next_round(plist, groups)
    sampler.observe(plist, groups)
    metrics["rollout/rounds"] = float(rounds)
    return groups, metrics


def sync_weights(cfg: Config, learner, rollout, batch, step: int) -> dict[str, float]:
    """Learner -> rollout weights through the object store; optional logprob parity check."""
    t0 = time.perf_counter()
    version = rollout.call("load_weights", learner.submit("export_weights"))
    metrics = {"time/sync": time.perf_counter() - t0, "sync/version": float(version)}
    every = cfg.train.parity_check_every
    if every and (step + 1) % every == 0 and batch.samples:
        seqs = [(s.prompt_ids, s.token_ids) for s in batch.samples[:16]]
        a, b = rollout.call("logprobs", seqs, batch.temperature), learner.call("logprobs", seqs, batch.temperature)
        diff = max(abs(x - y) for ra, rb in zip(a, b) for x, y in zip(ra, rb))
        metrics["sync/parity_max_diff"] = diff
        if diff > cfg.train.parity_tolerance:
            raise SyncError(
                f"rollout logprobs differ from the learner's by {diff:.3g} after sync {version} "
                f"(tolerance {cfg.train.parity_tolerance}): the rollout engine is on stale or wrong weights"
            )
    return metrics


def checkpoint(cfg, run_dir, learner, rollout, dataset, sampler, state) -> None:
    controller = {
        "step": state["step"], "evals": state["evals"], "pending": state.get("pending"),
        "data": dataset.state_dict(), "sampler": sampler.state_dict(),
    }
    save_checkpoint(run_dir, state["step"], learner, rollout, controller, cfg.train.keep_checkpoints)


def resume_from(ckpt: Path, learner, rollout, dataset, sampler) -> dict[str, Any]:
    learner.call("load", str(ckpt / "learner"))
    rollout.call("load_state_dict", torch.load(ckpt / "rollout.pt", weights_only=False))
    rollout.call("load_weights", learner.submit("export_weights"))
    state = load_controller_state(ckpt)
    dataset.load_state_dict(state.pop("data"))
    sampler.load_state_dict(state.pop("sampler"))
    return state


class EngineView:
    """Lets evaluation call `generate` on a rollout actor handle."""

    def __init__(self, handle) -> None:
        self.handle = handle

    def generate(self, requests, sampling):
        return self.handle.call("generate", requests, sampling)


def summarize(run_dir: Path, state: dict[str, Any]) -> None:
    evals = state["evals"]
    (run_dir / "summary.json").write_text(json.dumps({"steps": state["step"], "evals": evals}, indent=2))
    shown = {k: v for k, v in evals.items() if k in ("before", "after")}
    if shown:
        print_table(f"rlpost: {run_dir}", shown)
