"""The algorithm pipeline: the recipe's registered stages, built and checked before any model loads,
run in order on the step's batch on the driver.

    shape* -> combine -> advantage -> post* -> select* -> tokens*      (algo.<kind>; * = a list)

Before the first stage that needs the pre-update policy's per-token log-probs or entropy, the
pipeline asks the learner for them once (``learner.prepare``) for the rows still kept; the update
then reuses them as its old log-probs. Nothing runs that no stage asked for.
"""
from __future__ import annotations

import dataclasses
import inspect
import logging
import time
from dataclasses import dataclass
from functools import partial
from typing import Any, Callable

from rlpost.algos.stage import KINDS, STAGES, StageContext, StageInfo
from rlpost.config import AlgoConfig, ConfigError, StageSpec
from rlpost.types import Batch

log = logging.getLogger("rlpost.pipeline")

_LISTS = {"shape", "post", "select", "tokens"}
_WHEN = {
    "shape": "reward shaping, before the combiner",
    "combine": "objectives -> reward",
    "advantage": "rewards -> advantages",
    "post": "after advantages",
    "select": "after advantages: which rows train",
    "tokens": "last: per-token weights, after advantages and selection",
}


@dataclass
class BoundStage:
    where: str  # its place in the recipe, e.g. "algo.select[1]"
    name: str
    run: Callable[[Batch, StageContext], None]
    info: StageInfo

    @property
    def label(self) -> str:
        return f"{self.where} '{self.name}'"


def _specs(algo: AlgoConfig) -> list[tuple[str, str, StageSpec]]:
    """(kind, where, spec) in run order."""
    out = []
    for kind, key in zip(KINDS, ("shape", "combiner", "advantage", "post", "select", "tokens")):
        value = getattr(algo, key)
        if key in _LISTS:
            out += [(kind, f"algo.{key}[{i}]", spec) for i, spec in enumerate(value)]
        else:
            out.append((kind, f"algo.{key}", value))
    return out


def typed_kwargs(label: str, params: list[inspect.Parameter], kwargs: dict[str, Any]) -> dict[str, Any]:
    """Kwargs annotated float/int as numbers (YAML reads ``1e-6`` as a string); anything else as given."""
    out = dict(kwargs)
    for p in params:
        kind = str(p.annotation).split(" | ")[0].strip("'\"")
        if p.name in out and isinstance(out[p.name], str) and kind in ("float", "int"):
            try:
                out[p.name] = float(out[p.name]) if kind == "float" else int(out[p.name])
            except ValueError:
                raise ConfigError(f"{label}: kwarg {p.name} must be a number, got {out[p.name]!r}") from None
    return out


def _takes(params: list[inspect.Parameter]) -> str:
    names = [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    return ", ".join(names) or "no kwargs"


def build_stage(kind: str, where: str, spec: StageSpec) -> BoundStage:
    """Resolve one stage, bind its kwargs and check that its kind belongs where the recipe put it."""
    label = f"{where} '{spec.name}'"
    try:
        obj = STAGES.get(spec.target)
    except Exception as e:  # a plug-in file can fail to import with anything
        raise ConfigError(f"{where}: {e}" if spec.fn is None else f"{label}: cannot resolve '{spec.fn}': {type(e).__name__}: {e}") from None
    if isinstance(obj, type):
        params = list(inspect.signature(obj.__init__).parameters.values())[1:]
    elif callable(obj):
        params = list(inspect.signature(obj).parameters.values())[2:]  # after (batch, ctx)
    else:
        raise ConfigError(f"{label}: '{spec.target}' is a {type(obj).__name__}, not a stage function or class")
    if not any(p.kind == p.VAR_KEYWORD for p in params):
        unknown = sorted(set(spec.kwargs) - {p.name for p in params})
        if unknown:
            raise ConfigError(f"{label} does not take kwarg{'s' if len(unknown) > 1 else ''} {', '.join(unknown)} (it takes: {_takes(params)})")
    missing = [p.name for p in params if p.default is p.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name not in spec.kwargs]
    if missing:
        raise ConfigError(f"{label} needs kwargs {', '.join(missing)}")
    kwargs = typed_kwargs(label, params, spec.kwargs)
    try:
        run = obj(**kwargs) if isinstance(obj, type) else partial(obj, **kwargs)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"{label}: {e}") from None
    # An undeclared plug-in takes the kind of the key it is listed under and counts as batch-level.
    info = getattr(run, "stage_info", None) or getattr(obj, "stage_info", None) or StageInfo(kind)
    if info.kind != kind:
        raise ConfigError(
            f"{label} is a {info.kind} stage ({_WHEN[info.kind]}), it cannot run at {where} "
            f"({_WHEN[kind]}): list it under algo.{'combiner' if info.kind == 'combine' else info.kind}"
        )
    return BoundStage(where, spec.name, run, info)


def _attr(run: Callable, name: str) -> bool:
    """A stage's flag, on its instance or function (through the partial that binds its kwargs)."""
    return bool(getattr(run, name, False) or getattr(getattr(run, "func", None), name, False))


class Pipeline:
    def __init__(self, stages: list[BoundStage]) -> None:
        self.stages = stages
        self.needs = {n for s in stages for n in s.info.needs}
        names = {s.name for s in stages}
        for s in stages:
            if s.info.pairs_with and not names & set(s.info.pairs_with):
                log.warning("%s is meant to run with %s in the pipeline; it is not", s.label, " or ".join(s.info.pairs_with))

        combiner, estimator = self._of("combine"), self._of("advantage")
        flat = next((s for s in stages if _attr(s.run, "drops_flat_groups")), None)
        if flat and estimator and estimator.info.locality == "cohort":
            log.warning("%s drops a prompt's completions whose rewards are all equal, which %s gives advantages across the "
                        "cohort: they will not train (algo.select=[{name: keep_all}] trains every row)", flat.label, estimator.label)
        if combiner and estimator and _attr(combiner.run, "uniform_reward_scale") and _attr(estimator.run, "scale_invariant"):
            log.warning("%s multiplies every reward of a step by one number, which %s normalises away: "
                        "it changes nothing (kwargs apply_to: advantage scales the advantages instead)", combiner.label, estimator.label)

    def _of(self, kind: str) -> BoundStage | None:
        return next((s for s in self.stages if s.info.kind == kind), None)

    @classmethod
    def from_config(cls, algo: AlgoConfig, rewards: dict[str, float] | None = None) -> "Pipeline":
        """Build every stage; stages that refer to rewards by name check them (``check({name: weight})``)."""
        stages = [build_stage(kind, where, spec) for kind, where, spec in _specs(algo)]
        for s in stages:
            if rewards is not None and hasattr(s.run, "check"):
                try:
                    s.run.check(rewards)
                except ValueError as e:
                    raise ConfigError(f"{s.label}: {e}") from None
        return cls(stages)

    def callbacks(self) -> list[tuple[str, object]]:
        """(label, stage) of the stages with callback hooks, which learn from the policy between steps."""
        return [(s.label, s.run) for s in self.stages if hasattr(s.run, "after_step") or hasattr(s.run, "on_start")]

    def refusals(self, streamed: bool) -> list[str]:
        """Why these stages cannot run on the parts of a streamed step (empty: they can)."""
        if not streamed:
            return []
        why = []
        for s in self.stages:
            if s.info.locality in ("cohort", "batch"):
                why.append(f"{s.label} looks across the {s.info.locality} (a streamed part holds only some groups)")
            elif need := sorted(set(s.info.needs) & {"old_logprobs", "entropy", "learner"}):
                why.append(f"{s.label} needs {', '.join(need)} (streamed parts go to the learner without a prepare pass)")
            elif s.info.kind == "tokens":
                why.append(f"{s.label} weights tokens (streamed parts share one loss denominator)")
        return why

    def __call__(self, batch: Batch, ctx: StageContext) -> Batch:
        t0 = time.perf_counter()
        estimator = self._of("advantage")
        if estimator is not None:
            ctx.advantage = lambda rewards: self._advantages(estimator, batch, ctx, rewards)
        for s in self.stages:
            if set(s.info.needs) & {"old_logprobs", "entropy"}:
                self._prepare(batch, ctx)
            s.run(batch, ctx)
            if s.info.kind == "combine" and (batch.rewards is None or batch.rewards.shape != batch.keep.shape):
                raise RuntimeError(f"{s.label} did not set batch.rewards [B]")
            if s.info.kind == "advantage":
                if batch.advantages is None or batch.advantages.shape != batch.keep.shape:
                    raise RuntimeError(f"{s.label} did not set batch.advantages [B]")
                if batch.advantage_scale != 1.0:
                    batch.advantages = batch.advantages * batch.advantage_scale
        batch.metrics["time/pipeline"] = time.perf_counter() - t0 - batch.metrics.get("time/prepare", 0.0)
        return batch

    @staticmethod
    def _advantages(estimator: BoundStage, batch: Batch, ctx: StageContext, rewards) -> object:
        """The advantage stage's output for other rewards of the same rows and groups (batch untouched)."""
        probe = dataclasses.replace(batch, rewards=rewards, advantages=None, keep=batch.keep.clone(), metrics={})
        estimator.run(probe, ctx)
        return probe.advantages

    def _prepare(self, batch: Batch, ctx: StageContext) -> None:
        """Per-token old log-probs (and entropy if any stage needs it) for kept rows that lack them."""
        todo = batch.keep if batch.prepared is None else batch.keep & ~batch.prepared
        rows = todo.nonzero().flatten()
        if rows.numel() == 0:
            return
        t0 = time.perf_counter()
        out = ctx.learner.call("prepare", batch.train_batch(rows), "entropy" in self.needs)
        batch.set_prepared(rows, out["old_logprobs"], out.get("entropy"))
        batch.metrics["time/prepare"] = batch.metrics.get("time/prepare", 0.0) + time.perf_counter() - t0

    def state_dict(self) -> dict[str, Any]:
        return {s.where: s.run.state_dict() for s in self.stages if hasattr(s.run, "state_dict")}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for s in self.stages:
            if s.where in state and hasattr(s.run, "load_state_dict"):
                s.run.load_state_dict(state[s.where])
