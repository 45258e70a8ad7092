"""Uniform GRPO vs Knapsack RL vs Reinforce-Ada (balanced and positive) at equal total rollout budget,
from one SFT checkpoint of the target task, 2048 prompts revisited (recipes/grpo-target-2k.yaml), 3 seeds each.

Every run stops when it has generated the budget (``train.max_rollouts`` = the uniform run's
``--budget-steps`` x prompts x n), so Reinforce-Ada, which draws more per step, runs fewer steps.
Reported per method: the share of groups (prompt level) and of samples (sample level) with a non-zero
advantage, held-out accuracy (pass@1 from --samples samples at temperature 1, overall and per level;
greedy too) at the budget, at equal steps and at equal wall-clock, time per step, samples per prompt.
Run from the repository root:

    OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 python scripts/bench/adaptive_sampling.py          # 4 methods x 3 seeds
    python scripts/bench/adaptive_sampling.py --seeds 0 --budget-steps 10 --out runs/bench/as-quick   # quick check

Writes <out>/results.json and <out>/accuracy_wallclock.png and prints tables.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from common import machine_info, mean, median, plot_runs, print_table, write_json  # noqa: E402
from rl_runs import REPO, RUN, eval_checkpoint, rows, seed_runs, start  # noqa: E402

ACC = "sample_accuracy"  # held-out pass@1 from eval.samples samples (100 prompts greedy would be too coarse)
ADA = ["sampler.name=reinforce_ada", "algo.advantage=global_baseline"]
METHODS = {  # what each method changes in recipes/grpo-target-2k.yaml (recipes/knapsack.yaml, reinforce-ada.yaml hold the same)
    "grpo": [],
    "knapsack": ["sampler.name=knapsack", "sampler.kwargs={n_low: 2, n_up: 64, n_pos: 2, n_neg: 2, min_history: 8, window: 16}",
                 "algo.post=[{name: adv_clip, kwargs: {limit: 5.0}}]"],
    "ada-balanced": [*ADA, "sampler.kwargs={variant: balanced, round_size: 8, max_rounds: 4, threshold: 0.7}"],
    "ada-positive": [*ADA, "sampler.kwargs={variant: positive, round_size: 8, max_rounds: 4, threshold: 0.7}"],
    # ablations: where do the methods' results come from
    "knapsack-up16": ["sampler.name=knapsack", "sampler.kwargs={n_low: 2, n_up: 16, n_pos: 2, n_neg: 2, min_history: 8, window: 16}",
                      "algo.post=[{name: adv_clip, kwargs: {limit: 5.0}}]"],
    "knapsack-capped": ["sampler.name=knapsack", "algo.post=[{name: adv_clip, kwargs: {limit: 5.0}}]",
                        "sampler.kwargs={n_low: 2, n_up: 64, n_pos: 2, n_neg: 2, min_history: 8, window: 16, cap_surplus: true}"],
    "ada-balanced-std": [*ADA[:1], "algo.advantage={name: global_baseline, kwargs: {std: true}}",
                         "sampler.kwargs={variant: balanced, round_size: 8, max_rounds: 4, threshold: 0.7}"],
}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recipe", default="recipes/grpo-target-2k.yaml")
    p.add_argument("--methods", nargs="+", default=list(METHODS)[:4], choices=list(METHODS),
                   help="the first is the baseline; the rest of the choices are ablations")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--budget-steps", type=int, default=200, help="uniform steps the rollout budget buys (prompts x n each)")
    p.add_argument("--prompts", type=int, default=32)
    p.add_argument("--n", type=int, default=8)
    p.add_argument("--eval-every", type=int, default=20)
    p.add_argument("--eval-prompts", type=int, default=100)
    p.add_argument("--samples", type=int, default=16, help="eval samples per prompt: pass@1 is the accuracy reported")
    p.add_argument("--sft-steps", type=int, default=800)
    p.add_argument("--out", default=str(REPO / "runs" / "bench" / "adaptive_sampling"))
    p.add_argument("--set", nargs="*", default=[], help="extra overrides for every run (key=value)")
    return p.parse_args(argv)


def summarize_run(run_dir: Path, start: dict[str, Any], epoch_steps: int) -> dict[str, Any]:
    """What one run did: accuracy curve against steps, wall-clock and rollouts, and its sampling statistics."""
    rs = rows(run_dir)
    final = json.loads((run_dir / "eval_after.json").read_text())
    point = lambda step, wall, rollouts, e: {"step": step, "wall_s": wall, "rollouts": rollouts, "acc": e[ACC], "greedy": e["greedy_accuracy"]}  # noqa: E731
    clock, curve = 0.0, [point(0, 0.0, 0.0, start)]
    for r in rs:
        clock += r["time/step"]
        if f"eval/{ACC}" in r:
            curve.append(point(r["step"] + 1, clock, r["rollout/total"], {k[5:]: v for k, v in r.items() if k.startswith("eval/")}))
    curve.append(point(len(rs), clock, rs[-1]["rollout/total"], final))
    later = rs[epoch_steps:] or rs  # after the first epoch, when Knapsack has estimates for every prompt
    return {
        "curve": curve, "final": final[ACC], "final_greedy": final["greedy_accuracy"], "steps": len(rs), "wall_s": clock, "rollouts": rs[-1]["rollout/total"],
        "levels": {k.split("=", 1)[1]: v for k, v in final.items() if k.startswith(f"{ACC}/")},
        "groups_nonzero": mean(r.get("train/groups_nonzero_adv_frac") for r in later),
        "samples_nonzero": mean(r.get("train/samples_nonzero_adv_frac") for r in later),
        "generated_per_step": mean(r["rollout/generated"] for r in rs),
        "samples_per_prompt_max": max(r["rollout/samples_per_prompt_max"] for r in rs),
        "rounds": mean(r["rollout/rounds"] for r in rs), "step_s": median(r["time/step"] for r in rs),
        "train_reward": mean(r["reward/pool_mean"] for r in rs[-10:]),  # over all samples drawn
    }


def at(curve: list[dict], key: str, limit: float) -> float:
    """Accuracy of the latest eval at or before ``limit`` on axis ``key``."""
    return [c["acc"] for c in curve if c[key] <= limit + 1e-9][-1]


def main(argv=None) -> None:
    args = parse_args(argv)
    out, load, t0, sft = start(args.out, args.recipe, args.sft_steps)
    budget = args.budget_steps * args.prompts * args.n
    common = [args.recipe, *RUN, f"model.path={sft}", f"train.steps={10 * args.budget_steps}", f"train.max_rollouts={budget}",
              f"train.prompts_per_step={args.prompts}", f"rollout.n={args.n}", f"eval.limit={args.eval_prompts}", f"eval.samples={args.samples}",
              f"train.eval_every={args.eval_every}", *args.set]
    start = eval_checkpoint(out / "start", args.recipe, sft, [f"eval.limit={args.eval_prompts}", f"eval.samples={args.samples}"])
    n_train = yaml.safe_load((REPO / args.recipe).read_text())["data"]["task_kwargs"]["n_train"]
    epoch_steps = max(1, n_train // args.prompts)
    per: dict[str, list[dict]] = {m: [] for m in args.methods}
    for seed, m, run_dir in seed_runs(out / "runs", {m: METHODS[m] for m in args.methods}, common, args.seeds):
        per[m].append({"seed": seed, **summarize_run(run_dir, start, epoch_steps)})
    base = args.methods[0]
    for m in args.methods:
        for b, r in zip(per[base], per[m]):
            t, s = min(b["wall_s"], r["wall_s"]), min(b["steps"], r["steps"])
            r.update(same_time_s=t, acc_same_time=at(r["curve"], "wall_s", t), base_acc_same_time=at(b["curve"], "wall_s", t),
                     same_steps=s, acc_same_steps=at(r["curve"], "step", s), base_acc_same_steps=at(b["curve"], "step", s))
    cols = ["method", "seed", "steps", "generated_per_step", "samples_per_prompt_max", "rounds", "groups_nonzero", "samples_nonzero",
            "step_s", "wall_s", "final", "final_greedy", "same_steps", "base_acc_same_steps", "acc_same_steps", "same_time_s", "base_acc_same_time", "acc_same_time"]
    print_table(f"{' vs '.join(per)} at {budget} rollouts each, from pass@1 {start[ACC]:.3f} (greedy {start['greedy_accuracy']:.3f})",
                [{"method": m, **r} for m, runs in per.items() for r in runs], cols)
    keys = [c for c in cols if c not in ("method", "seed")]
    summary = {m: {k: mean(r[k] for r in runs) for k in keys} for m, runs in per.items()}
    for m, s in summary.items():
        s["groups_nonzero_rel"] = s["groups_nonzero"] / summary[base]["groups_nonzero"] - 1
        s["samples_nonzero_rel"] = s["samples_nonzero"] / summary[base]["samples_nonzero"] - 1
        s["levels"] = {lv: mean(r["levels"].get(lv) for r in per[m]) for lv in per[m][0]["levels"]}
    print_table(f"mean over seeds {args.seeds} (nonzero shares after the first epoch, {epoch_steps} steps)",
                [{"method": m, **s} for m, s in summary.items()],
                ["method", "steps", "generated_per_step", "groups_nonzero", "groups_nonzero_rel", "samples_nonzero", "samples_nonzero_rel",
                 "step_s", "wall_s", "final", "final_greedy", "base_acc_same_steps", "acc_same_steps", "base_acc_same_time", "acc_same_time"])
    level_names = [k.split("=", 1)[1] for k in start if k.startswith(f"{ACC}/")]
    print_table("held-out pass@1 per level at the budget (mean over seeds)",
                [{"method": "SFT start", **{lv: start[f"{ACC}/level={lv}"] for lv in level_names}}]
                + [{"method": m, **s["levels"]} for m, s in summary.items()], ["method", *level_names])
    plot_runs([(label, {m: [[(c[key], c["acc"]) for c in r["curve"]] for r in runs] for m, runs in per.items()})
               for key, label in (("wall_s", "training wall-clock (s, evals excluded)"), ("rollouts", "completions generated"))],
              out / "accuracy_wallclock.png", f"held-out accuracy at equal rollout budget ({budget}), {len(args.seeds)} seeds",
              f"held-out pass@1 ({args.samples} samples, T=1)")
    write_json(out / "results.json", {"runs": per, "summary": summary, "start": {k: v for k, v in start.items() if isinstance(v, float)},
                                      "budget": budget, "sft": sft, "args": vars(args), "machine": {**machine_info(load, threads=1), "wall_s": time.time() - t0}})
    print(f"wrote {out / 'results.json'}")


if __name__ == "__main__":
    main()
