"""The RL loop: a single controller that sequences registered components on Ray actors."""
from __future__ import annotations

import importlib.util
import inspect
import json
import logging
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rlpost import console
from rlpost.actors import ActorDiedError
from rlpost.algos.stage import StageContext
from rlpost.batch import completion_metrics, selection_metrics
from rlpost.callbacks import CallbackContext, Callbacks, build_callbacks
from rlpost.checkpoint import latest_checkpoint, load_controller_state, save_checkpoint
from rlpost.config import Config, ConfigError
from rlpost.data import PromptDataset
from rlpost.data.recipe import encode_prompts, load_split, prompt_reads
from rlpost.evaluate import evaluate, write_result
from rlpost.learner.modes import check_update_mode
from rlpost.models.loading import load_tokenizer, resolve_model_path
from rlpost.pipeline import Pipeline, typed_kwargs
from rlpost.placement import actors_needed, check_placement, check_resources, start_actors
from rlpost.registry import RegistryError
from rlpost.plots import plot_pass_curves
from rlpost.rollout.samplers import SAMPLERS, Sampler, finish_step, samples_in_rounds
from rlpost.scoring import Scorer, check_cohorts, merge_metrics, recipe_rewards, reward_refusals
from rlpost.sft import run_sft
from rlpost.streaming import stream_blockers, stream_groups
from rlpost.tracking import Tracker, check_sinks
from rlpost.types import Batch, Group, PromptItem, SamplingParams, Scored

log = logging.getLogger("rlpost.controller")

# What the training bar shows after the step count, as metric -> label.
TRAIN_INFO = {"reward/mean": "reward", "eval/greedy_accuracy": "eval", "train/response_length": "len", "learner/kl": "kl",
              "time/step": "s/step"}


class SyncError(RuntimeError):
    """Rollout and learner disagree on logprobs after a weight sync (stale or corrupt weights)."""


class NoSignalError(RuntimeError):
    """Step after step, no completion had a known reward: the run would train on nothing."""


def train(cfg: Config, resume: bool = True) -> dict[str, Any]:
    """Run the RL loop of a recipe; resumes from the run's last checkpoint unless resume=False. A learner
    that dies is replaced and the run resumes from its last checkpoint, up to train.max_restarts times
    (a rollout worker is restarted in place: ``RayHandle``)."""
    console.show_progress(cfg.log.progress)
    limit = cfg.train.max_restarts
    healed = {"learner": 0, "rollout": 0}  # restarts so far, over every resume of this call
    while True:
        try:
            return run_steps(cfg, resume or healed["learner"] > 0, healed)
        except ActorDiedError as e:
            if e.label != "learner" or healed["learner"] == limit:
                resumed = f" (the run resumed {limit} times already, train.max_restarts={limit})" if e.label == "learner" else ""
                raise ActorDiedError(f"{e}{resumed}; rerun the same command to resume from the last checkpoint", e.label, e.cause) from e
            healed["learner"] += 1
            log.warning("%s: resuming from the last checkpoint (learner restart %d of %d)", e, healed["learner"], limit)


def run_steps(cfg: Config, resume: bool, healed: dict[str, int] | None = None) -> dict[str, Any]:
    """The loop itself, from a fresh start or the last checkpoint; ``healed`` counts restarts before it."""
    run = start_run(cfg, resume)
    run.healed = healed if healed is not None else {"learner": 0, "rollout": 0}
    state = run.state
    tracker = Tracker(run.dir, cfg.log, start_step=state["step"], config=cfg.model_dump(mode="json"))
    ctx = CallbackContext(run)
    try:
        run.callbacks.on_start(ctx)  # evaluation before RL
        pending = state.pop("pending", None)
        with console.phase("train", cfg.train.steps, "steps", every=cfg.log.every, done=state["step"]) as bar:
            for step in range(state["step"], cfg.train.steps):
                if spent(cfg.train.max_rollouts, state["rollouts"]):  # a resumed run that had reached its budget
                    break
                t0 = time.perf_counter()
                groups, metrics = pending or run.collect(step)  # sampler rounds: generate -> verify -> rewards
                rollouts = state["rollouts"] + int(metrics.get("rollout/generated", 0))
                last = step + 1 == cfg.train.steps or spent(cfg.train.max_rollouts, rollouts)
                batch = run.build(groups, step)  # pipeline: shape, combine, advantage, post, select, tokens
                run.check_signal(batch, step)
                metrics.update({**completion_metrics(groups), **selection_metrics(batch), **batch.metrics})
                train_batch = batch.train_batch()
                update = run.learner.submit("update", train_batch)
                # With async rollouts the next step's groups come from the pre-update policy, while the learner trains.
                pending = run.collect(step + 1) if cfg.train.async_rollout and not last else None
                t_wait = time.perf_counter()
                metrics.update(run.learner.result(update))
                metrics["time/wait"] = time.perf_counter() - t_wait
                metrics.update(run.sync(train_batch, metrics, step))
                state["step"], state["pending"], state["rollouts"] = step + 1, pending, rollouts
                metrics["rollout/total"] = float(rollouts)  # completions generated so far in the run
                metrics.update(run.failures())
                metrics["time/step"] = time.perf_counter() - t0
                ctx.step, ctx.last, ctx.metrics = step, last, metrics
                run.callbacks.after_step(ctx, lambda m: tracker.log(step, m))  # then evaluation, log, checkpoint
                bar.update(step + 1, console.metric_info(metrics, TRAIN_INFO))
                if last:
                    break
        run.callbacks.on_end(ctx)  # evaluation after RL, the last checkpoint, the final model
    except ActorDiedError:
        run.healed["rollout"] += run.rollout.restarts
        raise
    finally:
        tracker.close()
        run.scorer.close()
        run.rollout.kill(), run.learner.kill()  # their CPUs, GPUs and placement group go back to Ray (a resumed run's actors)
    summarize(run.dir, state)
    return state


@dataclass
class Run:
    """Everything one training run holds: components, actor handles, data stream and loop state."""

    cfg: Config
    dir: Path
    learner: Any
    rollout: Any
    scorer: Scorer
    sampler: Any
    pipeline: Pipeline
    callbacks: Callbacks
    dataset: PromptDataset
    tokenizer: Any
    prompt_texts: list[str]
    prompt_ids: list[list[int]]
    eval_records: list[dict]
    sampling: SamplingParams
    state: dict[str, Any]
    resumed_step: int | None = None
    probe: Any = None  # the last non-empty batch: sequences for the parity check
    empty_steps: int = 0  # steps in a row without a completion of known reward
    healed: dict[str, int] | None = None  # restarts of the learner and rollout worker before this start (train)
    reads: list[list[int]] | None = None  # per prompt, where its samples are choices in the prompt (data.recipe.prompt_reads)
    choices: list[int] | None = None

    def collect(self, step: int) -> tuple[dict[int, Group], dict[str, float]]:
        items = next_items(self.dataset, self.cfg.train.prompts_per_step, self.prompt_texts, self.prompt_ids, self.reads, self.choices)
        if self.cfg.train.stream_parts > 1:  # the learner gets each part's gradients as it is scored
            build = lambda groups: self.build(groups, step)  # noqa: E731
            return stream_groups(self.cfg.train.stream_parts, self.sampler, self.rollout, self.learner, self.scorer, items, self.sampling, build)
        return collect_groups(self.sampler, self.rollout, self.scorer, items, self.sampling)

    def build(self, groups: dict[int, Group], step: int) -> Batch:
        """The step's rows with their structure, through the recipe's pipeline of stages."""
        weights = {r.name: r.weight for r in self.cfg.rewards}
        batch = Batch.from_groups(groups, weights, self.sampling.temperature or 1.0, self.sampling.max_new_tokens)
        if len(batch) == 0:  # every reward unknown: nothing to train on this step (counted in reward/dropped)
            return batch
        return self.pipeline(batch, StageContext(step, self.cfg.train.steps, self.learner, cohort=self.cfg.data.cohort))

    def check_signal(self, batch: Batch, step: int) -> None:
        """Stop after ``train.max_empty_steps`` steps in a row in which every completion's reward was unknown."""
        self.empty_steps = self.empty_steps + 1 if len(batch) == 0 else 0
        limit = self.cfg.train.max_empty_steps
        if limit and self.empty_steps >= limit:
            why = "; ".join(f"{k}: {v}" for k, v in self.scorer.last_errors.items()) or "no reward or verifier reported an error"
            raise NoSignalError(f"{self.empty_steps} steps in a row (to step {step}) had no completion with a known reward, "
                                f"so nothing to train on: {why}")

    def sync(self, batch, metrics: dict[str, float], step: int) -> dict[str, float]:
        """Weights to the rollout worker; with parity checks on, fail loudly on any sign of stale weights."""
        self.probe = batch if batch.samples else self.probe
        tolerance = self.cfg.train.parity_tolerance
        if self.cfg.train.parity_check_every and metrics.get("learner/logprob_mismatch_max", 0.0) > tolerance:
            raise SyncError(
                f"rollout logprobs of on-policy samples differ from the learner's by "
                f"{metrics['learner/logprob_mismatch_max']:.3g} (tolerance {tolerance}) at step {step}: "
                "the rollout engine generated with stale or wrong weights"
            )
        return sync_weights(self.cfg, self.learner, self.rollout, self.probe, step)

    def failures(self) -> dict[str, float]:
        healed = self.healed or {"learner": 0, "rollout": 0}
        return {"failures/rollout_restarts": float(healed["rollout"] + self.rollout.restarts), "failures/learner_restarts": float(healed["learner"])}

    def sync_now(self, step: int) -> dict[str, float]:
        """A sync outside the step (a callback wrote weights), parity always measured on the last batch."""
        return sync_weights(self.cfg, self.learner, self.rollout, self.probe, step, check=True)

    def evaluate(self, label: str) -> dict[str, Any]:
        result = evaluate(self.cfg, self.engine_view(), self.tokenizer, self.scorer.runner, self.eval_records, title=f"eval {label}")
        self.state["evals"][label] = result
        write_result(result, self.dir / f"eval_{label}.json")
        curves = {k: r["pass_curve"] for k, r in self.state["evals"].items() if "pass_curve" in r}
        if len(curves) > 1:  # the run's evals on one plot: how RL moved pass@k
            plot_pass_curves(curves, self.dir / "pass_at_k.png", f"{self.cfg.run.name}: pass@k on {result['n_prompts']} prompts")
        return result

    def validate(self, prompts: int) -> dict[str, Any]:
        cfg = self.cfg.model_copy(update={"eval": self.cfg.eval.model_copy(update={"samples": 0})})  # greedy only
        records = self.dataset.records[:prompts]
        return evaluate(cfg, self.engine_view(), self.tokenizer, self.scorer.runner, records, title=None)

    def engine_view(self) -> EngineView:
        return EngineView(self.rollout, self.cfg.rollout.batch_size)

    def checkpoint(self) -> None:
        controller = {
            "update_mode": self.cfg.learner.update, "step": self.state["step"], "rollouts": self.state["rollouts"],
            "evals": self.state["evals"], "pending": self.state.get("pending"),
            "data": self.dataset.state_dict(), "sampler": self.sampler.state_dict(), "pipeline": self.pipeline.state_dict(),
            "callbacks": self.callbacks.state_dict(),
        }
        save_checkpoint(self.dir, self.state["step"], self.learner, self.rollout, controller, self.cfg.train.keep_checkpoints)


def start_run(cfg: Config, resume: bool) -> Run:
    """Validate the recipe and data, warm-start, start the actors, and resume if a checkpoint exists."""
    seed_everything(cfg.run.seed, cfg.run.threads)
    # Everything that can be wrong with the recipe or data fails here, before a model loads.
    records = load_split(cfg, cfg.data.train_split)
    check_choices(cfg, records)
    dataset = cohort_stream(cfg, records)
    if cfg.train.warm_start == "sft":
        load_split(cfg, cfg.data.train_split, sft=True)
    eval_records = load_split(cfg, cfg.eval.split or cfg.data.eval_split, limit=cfg.eval.limit)
    check_components(cfg)
    check_sinks(cfg.log)
    pipeline = Pipeline.from_config(cfg.algo, {r.name: r.weight for r in cfg.rewards})
    check_cohorts({s.label: s.info.locality for s in pipeline.stages}, cfg.data.cohort)
    try:
        check_update_mode(cfg)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    if resume:
        check_resumable(cfg)
    sampler = build_sampler(cfg)
    callbacks = build_callbacks(cfg, pipeline.callbacks())
    scorer = Scorer(cfg)
    streamed = cfg.train.stream_parts > 1
    why = reward_refusals(scorer.localities, samples_in_rounds(sampler), streamed, cfg.sampler.name)
    if streamed:
        why += stream_blockers(cfg.algo, sampler, pipeline)
    if why:
        scorer.close()
        setting = f"train.stream_parts={cfg.train.stream_parts}" if streamed else f"sampler '{cfg.sampler.name}'"
        raise ConfigError(f"{setting} cannot be used here: {'; '.join(why)}")

    try:
        check_placement(cfg)
        check_resources(cfg.cluster, cfg.model, actors_needed(cfg.cluster))
    except ConfigError:
        scorer.close()
        raise

    policy = str(run_sft(cfg) if cfg.train.warm_start == "sft" else resolve_model_path(cfg.model))
    tokenizer = load_tokenizer(policy)
    prompt_texts, prompt_ids = encode_prompts(cfg, records, tokenizer)
    reads, choices = prompt_reads(records, prompt_texts, prompt_ids, tokenizer)
    with console.phase(f"start the learner and rollout worker ({cfg.cluster.mode})", None):
        learner, rollout = start_actors(cfg, policy)
        learner.call("ready"), rollout.call("ready")  # actor start-up is not charged to step 0
    r = cfg.rollout
    run = Run(
        cfg, cfg.output_dir, learner, rollout, scorer, sampler, pipeline, callbacks, dataset, tokenizer,
        prompt_texts, prompt_ids, eval_records,
        SamplingParams(n=r.n, max_new_tokens=r.max_new_tokens, temperature=r.temperature, top_p=r.top_p, top_k=r.top_k, stop=list(r.stop)),
        {"step": 0, "rollouts": 0, "evals": {}}, reads=reads, choices=choices,
    )
    # A restarted rollout worker starts from the policy it was built with: every weight goes to it again.
    rollout.on_restart = lambda: run.learner.call("request_full_sync") or run.sync_now(run.state["step"] - 1)
    ckpt = latest_checkpoint(run.dir) if resume else None
    if ckpt is not None:
        run.state = resume_from(ckpt, learner, rollout, run.dataset, sampler, pipeline, callbacks)
        run.resumed_step = run.state["step"]
        log.info("resumed from %s at step %d", ckpt, run.state["step"])
    return run


# ---------------------------------------------------------------------- the loop's parts

def check_resumable(cfg: Config) -> None:
    """A checkpoint written in another update mode, or before the pipeline, cannot be resumed: say so before anything starts."""
    ckpt = latest_checkpoint(cfg.output_dir)
    if ckpt is None:
        return
    state = torch.load(ckpt / "controller.pt", weights_only=False)
    pending = state.get("pending")
    if pending and not isinstance(next(iter(pending[0].values()), None), Group):
        raise ConfigError(f"{ckpt} holds async rollouts in the format before the pipeline (2026-12-01): pass --no-resume")
    saved = state.get("update_mode", "full")
    if saved != cfg.learner.update:
        raise ConfigError(
            f"{cfg.output_dir} holds a checkpoint trained with learner.update={saved}, this run asks for "
            f"learner.update={cfg.learner.update}: set another run.name, or pass --no-resume to start over there"
        )


def check_components(cfg: Config) -> None:
    """Resolve every named algorithm component now, so a typo fails before any model loads (the
    pipeline's stages are resolved and checked by ``Pipeline.from_config``)."""
    from rlpost.algos import AGGREGATIONS, KL_ESTIMATORS, POLICY_LOSSES
    from rlpost.rollout.worker import ENGINES, engine_name

    a = cfg.algo
    for key, registry, name in (
        ("algo.policy_loss", POLICY_LOSSES, a.policy_loss), ("algo.aggregation", AGGREGATIONS, a.aggregation),
        ("algo.kl_estimator", KL_ESTIMATORS, a.kl_estimator), ("sampler.name", SAMPLERS, cfg.sampler.name),
        ("rollout.engine", ENGINES, engine_name(cfg)),
    ):
        try:
            registry.get(name)
        except RegistryError as e:
            raise ConfigError(f"{key}: {e}") from None
    if engine_name(cfg) == "vllm" and importlib.util.find_spec("vllm") is None:
        raise ConfigError("rollout.engine=vllm but vLLM is not installed (pip install 'rlpost[vllm]'; see docs/vllm.md)")
    t = cfg.train
    if not cfg.verify.verifiers and (t.eval_before or t.eval_every or t.eval_after):
        raise ConfigError("train.eval_before/eval_every/eval_after score accuracy with a verifier and verify.verifiers is "
                          "empty: turn them off (rerankers evaluate with `rlpost rerank`, docs/reranking.md)")


def check_choices(cfg: Config, records: list[dict[str, Any]]) -> None:
    """Records scored in the prompt (``rank_marks``: GroupRank's ``score_at: block``) are sampled as choices
    there, not generated: that needs every record marked, the hf engine and a reward that reads choices
    (``reads_choices``), and such a reward needs those records."""
    from rlpost.rollout.worker import engine_name

    flags = ["rank_marks" in r for r in records]
    marked = any(flags)
    if marked and not all(flags):
        raise ConfigError(f"data: {flags.count(False)} of {len(records)} records have no rank_marks while the others do: "
                          "a run's samples are either scores chosen in the prompt or generated answers")
    specs, fns = recipe_rewards(cfg)
    readers = [name for (name, _, _), fn in zip(specs, fns) if getattr(fn, "reads_choices", False)]
    where = "these records are scored in the prompt (rank_marks, grouprank score_at: block), so an RL sample is a score chosen at each block end"
    if marked and engine_name(cfg) != "hf":
        chosen = engine_name(cfg) + (" (auto)" if cfg.rollout.engine == "auto" else "")
        raise ConfigError(f"rollout.engine={chosen}: {where}, which only the hf engine draws: set rollout.engine=hf")
    if marked and not readers:
        raise ConfigError(f"rewards: {where}; none of {', '.join(n for n, _, _ in specs)} reads those: use grouprank_block")
    if readers and not marked:
        raise ConfigError(f"rewards '{readers[0]}' reads scores chosen in the prompt, and these records have no rank_marks: "
                          "set data.task_kwargs.score_at=block")


def build_sampler(cfg: Config) -> Sampler:
    """The recipe's sampler, its options and budgets checked (one line naming the key when wrong)."""
    cls = SAMPLERS.get(cfg.sampler.name)
    where = f"sampler '{cfg.sampler.name}' (sampler.kwargs)"
    params = list(inspect.signature(cls.__init__).parameters.values())[1:] if isinstance(cls, type) else []
    kwargs = typed_kwargs(where, params, cfg.sampler.kwargs)
    try:
        sampler = cls(n=cfg.rollout.n, **kwargs)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where}: {e}") from None
    if hasattr(sampler, "observe"):
        raise ConfigError(f"sampler '{cfg.sampler.name}' defines observe(), which is now finish(items, members) -> groups "
                          "(see rlpost/rollout/samplers.py): rename it and return the groups")
    try:
        if hasattr(sampler, "check"):  # optional for plug-ins that do not subclass Sampler
            sampler.check(cfg.train.prompts_per_step)
    except ValueError as e:
        raise ConfigError(f"{where}: {e}") from None
    return sampler


def spent(budget: int | None, rollouts: int) -> bool:
    """True once a run with ``train.max_rollouts`` set has generated that many completions."""
    return budget is not None and rollouts >= budget


def seed_everything(seed: int, threads: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.set_num_threads(threads)


def cohort_stream(cfg: Config, records: list[dict[str, Any]]) -> PromptDataset:
    """The training prompt stream; with ``data.cohort`` every cohort must fit in one step."""
    dataset = PromptDataset(records, seed=cfg.run.seed, cohort=cfg.data.cohort)
    largest = max(len(u) for u in dataset.units)
    if largest > cfg.train.prompts_per_step:
        raise ConfigError(f"data.cohort '{cfg.data.cohort}': a cohort has {largest} records but train.prompts_per_step is "
                          f"{cfg.train.prompts_per_step}; a step holds whole cohorts, so raise prompts_per_step to at least {largest}")
    return dataset


def next_items(dataset: PromptDataset, n: int, texts: list[str], ids: list[list[int]], reads: list[list[int]] | None = None,
               choices: list[int] | None = None) -> dict[int, PromptItem]:
    return {k: PromptItem(k, i, rec, ids[i], texts[i], reads[i] if reads else None, choices)
            for k, (i, rec) in enumerate(dataset.next_batch(n))}


def collect_groups(
    sampler, rollout, scorer: Scorer, items: dict[int, PromptItem], sampling: SamplingParams
) -> tuple[dict[int, Group], dict[str, float]]:
    """Sampling rounds: generate, score, ask the sampler for more, until it asks for none; the
    sampler's ``finish`` then hands over the groups with their pool statistics."""
    members: dict[int, list[Scored]] = {k: [] for k in items}
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
            members[s.completion.key].append(s)
        rounds += 1
        requests = sampler.next_round(plist, members)
    metrics["rollout/rounds"] = float(rounds)
    return finish_step(sampler, plist, members, metrics)


def sync_weights(cfg: Config, learner, rollout, batch, step: int, check: bool = False) -> dict[str, float]:
    """Learner -> rollout weights through the object store; logprob parity checked every
    ``train.parity_check_every`` syncs, or measured now with ``check`` (fatal only with checks on)."""
    t0 = time.perf_counter()
    applied = rollout.call("load_weights", learner.submit("export_weights"))
    metrics = {
        "time/sync": time.perf_counter() - t0, "sync/version": float(applied["version"]),
        "sync/bytes": float(applied["bytes"]), "time/sync_apply": applied["apply_s"],
    }
    version = applied["version"]
    every = cfg.train.parity_check_every
    if (check or (every and (step + 1) % every == 0)) and batch is not None:
        seqs = [(s.prompt_ids, s.token_ids) for s in batch.samples[:16]]
        expected = learner.submit("logprobs", seqs, batch.temperature)
        per_worker = rollout.each("logprobs", seqs, batch.temperature)  # every worker must hold the new weights
        b = learner.result(expected, "logprobs")
        diffs = [max(abs(x - y) for ra, rb in zip(a, b) for x, y in zip(ra, rb)) for a in per_worker]
        diff = max(diffs)
        metrics["sync/parity_max_diff"] = diff
        if diff > cfg.train.parity_tolerance and every:
            which = "the rollout engine is" if len(diffs) == 1 else f"rollout worker {diffs.index(diff)} of {len(diffs)} is"
            raise SyncError(
                f"rollout logprobs differ from the learner's by {diff:.3g} after sync {version} "
                f"(tolerance {cfg.train.parity_tolerance}): {which} on stale or wrong weights"
            )
    return metrics


def resume_from(ckpt: Path, learner, rollout, dataset, sampler, pipeline: Pipeline, callbacks: Callbacks) -> dict[str, Any]:
    learner.call("load", str(ckpt / "learner"))
    rollout.call("load_state_dict", torch.load(ckpt / "rollout.pt", weights_only=False))
    rollout.call("load_weights", learner.submit("export_weights"))
    state = load_controller_state(ckpt)
    try:
        dataset.load_state_dict(state.pop("data"))
        sampler.load_state_dict(state.pop("sampler"))
        pipeline.load_state_dict(state.pop("pipeline", {}))
        callbacks.load_state_dict(state.pop("callbacks", []))
    except ConfigError:
        raise
    except (KeyError, TypeError, ValueError) as e:
        raise ConfigError(f"checkpoint {ckpt} was written by a run with other settings ({type(e).__name__}: {e}): "
                          "set another run.name, or pass --no-resume") from None
    state.pop("update_mode", None)
    state.setdefault("rollouts", 0)  # checkpoints from before train.max_rollouts
    return state


class EngineView:
    """Lets evaluation call `generate` on a rollout actor handle (whose engine runs ``batch_size`` rows at a time)."""

    def __init__(self, handle, batch_size: int) -> None:
        self.handle, self.batch_size = handle, batch_size

    def generate(self, requests, sampling):
        return self.handle.call("generate", requests, sampling)


def summarize(run_dir: Path, state: dict[str, Any]) -> None:
    evals = state["evals"]
    (run_dir / "summary.json").write_text(json.dumps({"steps": state["step"], "rollouts": state["rollouts"], "evals": evals}, indent=2))
    if evals:
        console.table(f"held-out evaluation of {run_dir}", evals)
    console.echo(f"done: {state['step']} steps; the run's model, metrics and evaluations are in {run_dir}")
