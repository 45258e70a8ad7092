"""Completions -> verifier facts -> reward vector -> combined scalar, with failures counted."""
from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

from rlpost.config import Config, ConfigError
from rlpost.evaluate import correctness_verifier
from rlpost.types import Completion, PromptItem, Scored


def make_verifier_runner(cfg: Config):
    from verifiers import VerifierRunner

    specs = [(v.name, v.target, dict(v.kwargs)) for v in cfg.verify.verifiers]
    try:
        return VerifierRunner(specs, timeout_s=cfg.verify.timeout_s, num_workers=cfg.verify.num_workers)
    except ValueError as e:
        raise ConfigError(f"verify.verifiers: {e}") from None


class Scorer:
    """Runs verifiers and rewards on a round of completions; owns the verifier process pool."""

    def __init__(self, cfg: Config) -> None:
        from rewards import reward_locality

        self.cfg = cfg
        self.reward_specs, self.reward_fns = recipe_rewards(cfg)
        try:
            self.localities = {name: reward_locality(fn) for (name, _, _), fn in zip(self.reward_specs, self.reward_fns)}
        except (ValueError, LookupError) as e:
            raise ConfigError(f"rewards: {e}") from None
        check_reward_verifiers(self.reward_specs, self.reward_fns, [v.name for v in cfg.verify.verifiers])
        check_cohorts({f"reward '{n}'": loc for n, loc in self.localities.items()}, cfg.data.cohort)
        self.weights = [r.weight for r in cfg.rewards]
        self.runner = make_verifier_runner(cfg)
        self.correct_key = correctness_verifier(cfg) if cfg.verify.verifiers else None
        self.last_errors: dict[str, str] = {}  # why each failing reward or verifier failed, in the latest call

    def close(self) -> None:
        self.runner.close()

    def score(self, items: dict[int, PromptItem], completions: list[Completion]) -> tuple[list[Scored], dict[str, float]]:
        from rewards import weighted_sum

        t0 = time.perf_counter()
        records = [items[c.key].record for c in completions]
        texts = [c.text for c in completions]
        facts = self.runner.run(texts, records)
        t1 = time.perf_counter()
        result = reward_values(
            self.reward_specs, self.reward_fns, [items[c.key].prompt_text for c in completions], completions, facts, records
        )
        combined = weighted_sum(result.values, self.weights)
        t2 = time.perf_counter()

        scored = []
        for i, c in enumerate(completions):
            vf = facts[i].get(self.correct_key, {}) if self.correct_key else {}
            correct = bool(vf["correct"]) if "correct" in vf else None
            scored.append(Scored(c, float(combined[i]), dict(zip(result.names, map(float, result.values[i]))), correct))
        metrics: dict[str, float] = {"time/verify": t1 - t0, "time/reward": t2 - t1}
        for name, counts in self.runner.last_run_stats().items():
            metrics[f"verify/errors/{name}"] = float(counts.get("errors", 0))
            metrics[f"verify/timeouts/{name}"] = float(counts.get("timeouts", 0))
        for name in result.names:
            metrics[f"reward/nan/{name}"] = float(result.nan_counts.get(name, 0))
        for name in result.errors:
            metrics[f"reward/raised/{name}"] = 1.0
        metrics["reward/dropped"] = float(sum(1 for s in scored if math.isnan(s.reward)))
        self.last_errors = {f"reward '{name}'": why for name, why in result.errors.items()}
        for name, counts in self.runner.last_run_stats().items():
            if counts.get("errors", 0) or counts.get("timeouts", 0):
                self.last_errors[f"verifier '{name}'"] = f"{counts.get('errors', 0)} errors, {counts.get('timeouts', 0)} timeouts in {len(completions)} completions"
        for name in result.names:
            if result.nan_counts.get(name) == len(completions) and name not in result.errors:
                self.last_errors.setdefault(f"reward '{name}'", f"unknown (NaN) for all {len(completions)} completions")
        return scored, metrics


def recipe_rewards(cfg: Config) -> tuple[list, list]:
    """The recipe's reward specs and their resolved functions, or a ConfigError naming the reward."""
    from rewards import resolve_rewards

    specs = [(r.name, r.target, dict(r.kwargs)) for r in cfg.rewards]
    try:
        return specs, resolve_rewards(specs)
    except (ValueError, LookupError) as e:
        raise ConfigError(f"rewards: {e}") from None


def check_reward_verifiers(specs, fns, verifiers: list[str]) -> None:
    """A reward that reads a verifier's facts (a ``verifier`` kwarg, or its default) must name a configured one."""
    import inspect

    for (name, _, kwargs), fn in zip(specs, fns):
        param = inspect.signature(fn).parameters.get("verifier")
        wanted = kwargs.get("verifier", param.default if param is not None else None)
        if isinstance(wanted, str) and wanted not in verifiers:
            raise ConfigError(f"rewards '{name}': verifier '{wanted}' is not configured (verify.verifiers: {', '.join(verifiers) or 'none'})")


def reward_values(specs, fns, prompts: list[str], completions: list[Completion], facts: list[dict], records: list[dict]):
    """Every reward on ``completions`` (a ``RewardResult``); each record's columns go to the rewards as lists."""
    from rewards import compute_rewards

    names = dict.fromkeys(col for r in records for col in r)  # every column, first-seen order
    columns: dict[str, list[Any]] = {col: [r.get(col) for r in records] for col in names}
    return compute_rewards(specs, prompts, [c.text for c in completions], facts, columns, [c.token_ids for c in completions], fns=fns)


def check_cohorts(localities: dict[str, str], cohort: str | None) -> None:
    """A reward or stage that compares a cohort (``{label: locality}``) needs ``data.cohort``: without it a
    step may hold part of one."""
    for label, locality in localities.items():
        if locality == "cohort" and not cohort:
            raise ConfigError(f"{label} compares a whole cohort (e.g. a query's candidates): set data.cohort to the "
                              "column that names it (e.g. qid) so every step holds whole cohorts")


def reward_refusals(localities: dict[str, str], in_rounds: bool, streamed: bool, sampler_name: str) -> list[str]:
    """Why rewards that look across completions cannot run here: each scoring call sees one sampling
    round (multi-round samplers) or one streamed part (whole groups, not the whole batch)."""
    why = []
    for name, locality in localities.items():
        if in_rounds and locality != "row":
            why.append(f"reward '{name}' looks across a {locality} and sampler '{sampler_name}' scores each round of a group separately")
        elif streamed and locality in ("cohort", "batch"):
            why.append(f"reward '{name}' looks across the {locality} (a streamed part holds only some groups)")
    return why


def merge_metrics(into: dict[str, float], new: dict[str, float]) -> None:
    """Add counters/timings from several sampling rounds of one step."""
    for k, v in new.items():
        into[k] = into.get(k, 0.0) + v


def objective_means(scored: list[Scored]) -> dict[str, float]:
    out: dict[str, float] = {}
    if not scored:
        return out
    for name in scored[0].objectives:
        vals = np.array([s.objectives[name] for s in scored], dtype=np.float64)
        out[f"reward/{name}"] = float(np.nanmean(vals)) if np.isfinite(vals).any() else float("nan")
    return out
