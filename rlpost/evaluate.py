"""Held-out evaluation: greedy accuracy and unbiased pass@k curves, as JSON, a PNG and a console table."""
from __future__ import annotations

import json
import math
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np

from rlpost import console
from rlpost.config import Config
from rlpost.data.recipe import encode_prompts, load_split
from rlpost.types import Completion, Request, SamplingParams


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples with c correct: 1 - C(n-c, k) / C(n, k)."""
    if k > n:
        raise ValueError(f"pass@{k} needs at least {k} samples per prompt, got {n}")
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def pass_curve_ks(n: int, extra: list[int]) -> list[int]:
    """Every power of two up to n, plus the ks asked for (those above n are left out)."""
    ks = {1 << i for i in range(n.bit_length()) if 1 << i <= n} | {k for k in extra if 1 <= k <= n}
    return sorted(ks)


def pass_curve(n: int, correct_per_prompt: list[int], ks: list[int]) -> dict[str, list[float]]:
    """Mean unbiased pass@k over prompts and its standard error, for each k."""
    out: dict[str, list[float]] = {"k": [], "pass": [], "se": []}
    m = len(correct_per_prompt)
    for k in ks:
        vals = [pass_at_k(n, c, k) for c in correct_per_prompt]
        mean = sum(vals) / m
        var = sum((v - mean) ** 2 for v in vals) / max(1, m - 1)
        out["k"].append(k)
        out["pass"].append(mean)
        out["se"].append(math.sqrt(var / m))
    return out


def correctness_verifier(cfg: Config) -> str:
    """The verifier whose `correct` fact defines accuracy: the first one configured."""
    if not cfg.verify.verifiers:
        raise ValueError("evaluation needs at least one verifier in verify.verifiers")
    return cfg.verify.verifiers[0].name


def score(facts: list[dict[str, dict]], verifier: str) -> tuple[list[bool], int]:
    """Correct flags and the number of completions whose verification failed (counted, not hidden)."""
    flags, errors = [], 0
    for f in facts:
        vf = f.get(verifier, {})
        if "error" in vf:
            errors += 1
        flags.append(bool(vf.get("correct", False)))
    return flags, errors


CALLS = 10  # evaluation's progress steps


def generate(engine, requests: list[Request], sampling: SamplingParams, bar: console.Phase | None) -> list[Completion]:
    """``engine.generate(requests, sampling)`` in up to ~CALLS calls of whole engine batches (``engine.batch_size``
    rows each), so that each call's completions count on ``bar`` and the completions are those of one call."""
    if not requests or sampling.n == 0:
        return []
    rows = getattr(engine, "batch_size", None) or len(requests) * sampling.n
    whole = rows // math.gcd(rows, sampling.n)  # prompts whose samples fill whole batches
    per_call = whole * max(1, math.ceil(len(requests) / whole / CALLS))  # at most ~CALLS calls (vLLM batches across a call)
    out: list[Completion] = []
    for start in range(0, len(requests), per_call):
        chunk = engine.generate(requests[start : start + per_call], sampling)
        out += chunk
        if bar is not None:
            bar.update(bar.done + len(chunk))
    return out


def evaluate(
    cfg: Config, engine, tokenizer, runner, records: list[dict[str, Any]] | None = None, title: str | None = "eval",
) -> dict[str, Any]:
    """Greedy accuracy (and pass@k when eval.samples > 0) of `engine` on the eval split; ``title`` names its
    progress on the console (None: none shown)."""
    ec = cfg.eval
    if records is None:
        records = load_split(cfg, ec.split or cfg.data.eval_split, limit=ec.limit)
    prompt_texts, prompt_ids = encode_prompts(cfg, records, tokenizer)
    verifier = correctness_verifier(cfg)
    requests = [Request(prompt_ids=p, key=i) for i, p in enumerate(prompt_ids)]
    stop = cfg.rollout.stop

    total = len(requests) * (1 + ec.samples)
    with console.phase(title, total, "completions") if title else nullcontext() as bar:
        greedy = generate(engine, requests, SamplingParams(n=1, max_new_tokens=ec.max_new_tokens, temperature=0.0, stop=stop), bar)
        sampled = generate(
            engine, requests, SamplingParams(n=ec.samples, max_new_tokens=ec.max_new_tokens, temperature=ec.temperature, stop=stop), bar,
        ) if ec.samples > 0 else []
    facts = runner.run([c.text for c in greedy], records)
    flags, errors = score(facts, verifier)
    result: dict[str, Any] = {
        "n_prompts": len(records),
        "greedy_accuracy": sum(flags) / max(1, len(flags)),
        "mean_length": sum(len(c.token_ids) for c in greedy) / max(1, len(greedy)),
        "verifier_errors": errors,
        **reward_means(cfg, prompt_texts, greedy, facts, records),
    }
    if ec.samples > 0:
        recs = [records[c.key] for c in sampled]
        s_flags, s_errors = score(runner.run([c.text for c in sampled], recs), verifier)
        result["verifier_errors"] += s_errors
        correct_per_prompt = [0] * len(records)
        for c, ok in zip(sampled, s_flags):
            correct_per_prompt[c.key] += ok
        curve = pass_curve(ec.samples, correct_per_prompt, pass_curve_ks(ec.samples, ec.pass_k))
        for k, v in zip(curve["k"], curve["pass"]):
            result[f"pass@{k}"] = v
        result["sample_accuracy"] = sum(s_flags) / max(1, len(s_flags))
        result["pass_curve"] = curve
        result["correct_per_prompt"] = correct_per_prompt
    if ec.breakdown and records and all(ec.breakdown in r for r in records):
        result.update(breakdown(records, ec.breakdown, flags, result.get("correct_per_prompt"), ec.samples))
    return result


def reward_means(cfg: Config, prompts: list[str], completions: list, facts: list[dict], records: list[dict]) -> dict[str, float]:
    """``reward/<name>``: the mean of each of the recipe's rewards over the completions (NaNs left out),
    so every objective has a held-out value."""
    from rlpost.scoring import recipe_rewards, reward_values

    result = reward_values(*recipe_rewards(cfg), prompts, completions, facts, records)
    known = ~np.isnan(result.values)
    return {
        f"reward/{name}": float(result.values[known[:, k], k].mean()) if known[:, k].any() else float("nan")
        for k, name in enumerate(result.names)
    }


def breakdown(records: list[dict], column: str, greedy: list[bool], correct: list[int] | None, samples: int) -> dict[str, float]:
    """Greedy (and sampled) accuracy per value of ``column``, e.g. ``greedy_accuracy/level=3x2d+-``."""
    out: dict[str, float] = {}
    for value in dict.fromkeys(str(r[column]) for r in records):
        idx = [i for i, r in enumerate(records) if str(r[column]) == value]
        out[f"greedy_accuracy/{column}={value}"] = sum(greedy[i] for i in idx) / len(idx)
        if correct is not None:
            out[f"sample_accuracy/{column}={value}"] = sum(correct[i] for i in idx) / (len(idx) * samples)
    return out


def write_result(result: dict[str, Any], path: Path) -> None:
    """The result as JSON at ``path``, and its pass@k curve (when sampled) as a PNG beside it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2))
    if "pass_curve" in result:
        from rlpost.plots import plot_pass_curves

        plot_pass_curves({path.stem: result["pass_curve"]}, path.with_suffix(".png"), f"pass@k ({result['n_prompts']} prompts)")
