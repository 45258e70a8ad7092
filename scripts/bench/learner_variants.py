"""GRPO vs its pipeline variants from one SFT checkpoint: unlikeliness (pass@1..64 after the same
steps), D3S (tokens trained per step, held-out accuracy vs wall-clock), and the cost of the pipeline
itself (step time before and after it, with no stage needing a learner pass).

Every run trains from the same SFT checkpoint of the recipe's task (built once, cached) in its own
process with one torch thread; the methods of a seed run side by side, so that they see the same
load. Run from the repository root:

    OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 python scripts/bench/learner_variants.py               # all parts, 3 seeds
    python scripts/bench/learner_variants.py --parts unlikeliness --recipe recipes/grpo-arith3.yaml --out runs/bench/lv-arith3
    python scripts/bench/learner_variants.py --parts unlikeliness --seeds 0 --steps 10    # quick check
    python scripts/bench/learner_variants.py --parts overhead --baseline-rev 5bcd5b2      # step time vs the old tree

Writes <out>/results.json, pass_at_k.png and d3s_wallclock.png, and prints tables.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from common import loadavg, machine_info, mean, median, plot_runs, print_table, write_json  # noqa: E402
from rl_runs import REPO, RUN, TRAINED, eval_checkpoint, rows, run_pair, seed_runs, sft_checkpoint  # noqa: E402

METHODS = {  # what each method changes in the recipe (recipes/unlikeliness.yaml and recipes/d3s.yaml hold the same)
    "grpo": [],
    "unlikeliness": ["algo.shape=[{name: unlikeliness, kwargs: {beta: 0.25}}]"],
    "unlikeliness-b1": ["algo.shape=[{name: unlikeliness, kwargs: {beta: 1.0}}]"],
    "unlikeliness-2ep": ["algo.shape=[{name: unlikeliness, kwargs: {beta: 0.25}}]", "algo.epochs=2"],
    "grpo-2ep": ["algo.epochs=2"],
    "d3s": ["algo.select=[{name: d3s_samples, kwargs: {mode: cross, n_init: 4, n_final: 8}}]",
            "algo.tokens=[{name: d3s_tokens, kwargs: {k_init: 0.2, k_final: 0.5}}]"],
    "d3s-samples": ["algo.select=[{name: d3s_samples, kwargs: {mode: cross, n_init: 4, n_final: 8}}]"],  # D1S-cross
    "d3s-k50": ["algo.select=[{name: d3s_samples, kwargs: {mode: cross, n_init: 4, n_final: 8}}]",
                "algo.tokens=[{name: d3s_tokens, kwargs: {k_init: 0.5, k_final: 1.0}}]"],
}

def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--parts", nargs="+", default=["overhead", "unlikeliness", "d3s"], choices=["overhead", "unlikeliness", "d3s"])
    p.add_argument("--recipe", default="recipes/grpo-target.yaml", help="task, SFT and RL settings (GRPO) the methods change")
    p.add_argument("--methods", nargs="+", default=["grpo", "unlikeliness", "unlikeliness-b1"], choices=list(METHODS),
                   help="for the unlikeliness part")
    p.add_argument("--d3s-methods", nargs="+", default=["grpo", "d3s"], choices=list(METHODS),
                   help="for the d3s part (the first is the baseline the others are compared with at equal wall-clock)")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=200, help="RL steps per run (the recipes: 200)")
    p.add_argument("--eval-prompts", type=int, default=300, help="at most the recipe's test split")
    p.add_argument("--samples", type=int, default=64, help="samples per eval prompt for pass@k")
    p.add_argument("--eval-every", type=int, default=10, help="greedy evals along the D3S and GRPO runs")
    p.add_argument("--sft-steps", type=int, default=800)
    p.add_argument("--overhead-steps", type=int, default=30)
    p.add_argument("--baseline-rev", default="5bcd5b2", help="git revision before the pipeline, for the overhead part")
    p.add_argument("--out", default=str(REPO / "runs" / "bench" / "learner_variants"))
    p.add_argument("--set", nargs="*", default=[], help="extra overrides for every run (key=value)")
    return p.parse_args(argv)


# ------------------------------------------------------------------ parts

def overhead(args, out: Path, sft: str) -> dict[str, Any]:
    """Default GRPO (no stage needing a learner pass, one pass per batch) on the old tree and this one."""
    base_tree = out / "baseline-tree"
    if not base_tree.exists():
        subprocess.run(["git", "worktree", "add", "--detach", str(base_tree), args.baseline_rev], cwd=REPO, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # the quickstart's task and settings: the old tree has no arithmetic levels
    common = ["recipes/quickstart.yaml", *RUN, f"model.path={sft}", f"train.steps={args.overhead_steps}",
              "train.eval_after=false", *args.set]
    result: dict[str, Any] = {}
    for rep in range(2):  # both trees twice, side by side, swapping cores' order
        cells = [(REPO, out / f"overhead/new-{rep}", common), (base_tree, out / f"overhead/old-{rep}", common)]
        run_pair(cells if rep == 0 else cells[::-1])
    for label in ("new", "old"):
        steps = [r["time/step"] for rep in range(2) for r in rows(out / f"overhead/{label}-{rep}")[3:]]
        learner = [r.get("time/update", float("nan")) + r.get("time/old_logprob", 0.0) for rep in range(2)
                   for r in rows(out / f"overhead/{label}-{rep}")[3:]]
        result[label] = {"step_s_median": median(steps), "learner_s_median": median(learner),
                         "prepare_s": sum(r.get("time/prepare", 0.0) for rep in range(2) for r in rows(out / f"overhead/{label}-{rep}"))}
    result["ratio_new_over_old"] = result["new"]["step_s_median"] / result["old"]["step_s_median"]
    print_table(f"step time, default GRPO, {args.overhead_steps} steps x 2 (median of steps 3+)",
                [{"tree": k, **v} for k, v in result.items() if isinstance(v, dict)],
                ["tree", "step_s_median", "learner_s_median", "prepare_s"])
    print(f"new / old step time: {result['ratio_new_over_old']:.3f}")
    return result


def eval_settings(args) -> list[str]:
    return [f"eval.limit={args.eval_prompts}", "eval.max_new_tokens=8"]


def starting_point(args, out: Path, sft: str) -> dict[str, Any]:
    """pass@k of the SFT checkpoint itself, with the same evaluator."""
    return eval_checkpoint(out / "start", args.recipe, sft, [*eval_settings(args), f"eval.samples={args.samples}"])


def unlikeliness(args, out: Path, sft: str) -> dict[str, Any]:
    start = starting_point(args, out, sft)
    common = [args.recipe, *RUN, f"model.path={sft}", f"train.steps={args.steps}", *eval_settings(args), f"eval.samples={args.samples}", *args.set]
    runs: dict[str, list[dict]] = {m: [] for m in args.methods}
    for _, m, run_dir in seed_runs(out / "unlikeliness", {m: METHODS[m] for m in args.methods}, common, args.seeds, side_by_side=len(args.methods)):
        e = json.loads((run_dir / "eval_after.json").read_text())
        rs = rows(run_dir)
        e["distinct_correct"] = mean(r.get("unlikeliness/distinct_correct") for r in rs)
        e["train_reward_last20"] = mean(r["reward/mean"] for r in rs[-20:])
        e["step_s"] = median(r["time/step"] for r in rs)
        e["prompts_never_solved"] = sum(c == 0 for c in e["correct_per_prompt"])  # 0 of --samples correct
        runs[m].append(e)
    ks = start["pass_curve"]["k"]
    curves = {"SFT start": start["pass_curve"]}
    table = [{"method": "SFT start", **{f"pass@{k}": v for k, v in zip(ks, start["pass_curve"]["pass"])},
              "greedy": start["greedy_accuracy"], "prompts_never_solved": sum(c == 0 for c in start["correct_per_prompt"])}]
    for m, evals in runs.items():
        mean_curve = [mean(e["pass_curve"]["pass"][i] for e in evals) for i in range(len(ks))]
        spread = [max(e["pass_curve"]["pass"][i] for e in evals) - min(e["pass_curve"]["pass"][i] for e in evals) for i in range(len(ks))]
        curves[f"{m} ({len(evals)} seeds)"] = {"k": ks, "pass": mean_curve, "se": [s / 2 for s in spread]}
        extra = {k: mean(e[k] for e in evals) for k in ("distinct_correct", "train_reward_last20", "step_s", "prompts_never_solved")}
        table.append({"method": m, **{f"pass@{k}": v for k, v in zip(ks, mean_curve)}, "greedy": mean(e["greedy_accuracy"] for e in evals), **extra})
        for seed, e in zip(args.seeds, evals):
            table.append({"method": f"  seed {seed}", **{f"pass@{k}": v for k, v in zip(ks, e["pass_curve"]["pass"])},
                          "greedy": e["greedy_accuracy"], **{k: e[k] for k in extra}})
    from rlpost.plots import plot_pass_curves

    plot_pass_curves(curves, out / "pass_at_k.png", f"pass@k after {args.steps} steps ({start['n_prompts']} held-out prompts)")
    print_table(f"pass@k after {args.steps} RL steps from one SFT checkpoint (mean over seeds {args.seeds})", table,
                ["method", *[f"pass@{k}" for k in ks], "greedy", "prompts_never_solved", "distinct_correct", "train_reward_last20", "step_s"])
    keep = ("pass_curve", "greedy_accuracy", "distinct_correct", "train_reward_last20", "step_s", "prompts_never_solved")
    return {"start": start["pass_curve"], "greedy_start": start["greedy_accuracy"], "table": table,
            "runs": {m: [{k: e[k] for k in keep} for e in evals] for m, evals in runs.items()}}


def d3s(args, out: Path, sft: str) -> dict[str, Any]:
    start = starting_point(args, out, sft)
    common = [args.recipe, *RUN, f"model.path={sft}", f"train.steps={args.steps}", *eval_settings(args), "eval.samples=0",
              f"train.eval_every={args.eval_every}", *args.set]
    per: dict[str, list[dict]] = {m: [] for m in args.d3s_methods}
    for seed, m, run_dir in seed_runs(out / "d3s", {m: METHODS[m] for m in args.d3s_methods}, common, args.seeds, side_by_side=len(args.d3s_methods)):
        rs = rows(run_dir)
        clock, curve = 0.0, [(0.0, start["greedy_accuracy"])]
        for r in rs:
            clock += r["time/step"]
            if "eval/greedy_accuracy" in r:
                curve.append((clock, r["eval/greedy_accuracy"]))
        final = json.loads((run_dir / "eval_after.json").read_text())["greedy_accuracy"]
        curve.append((clock, final))
        per[m].append({
            "seed": seed, "curve": curve, "final": final, "wall_s": clock,
            "tokens_per_step": mean(r.get("train/tokens", 0.0) for r in rs),
            "forward_tokens_per_step": mean(r.get("train/tokens_forward", 0.0) for r in rs),
            "samples_per_step": mean(r.get("train/samples", 0.0) for r in rs),
            "learner_s_per_step": mean(r.get("time/update", 0.0) + r.get("time/prepare", 0.0) for r in rs),
            "step_s": median(r["time/step"] for r in rs),
        })
    # accuracy at equal wall-clock: at the end of the shorter of the two runs of a seed, each run's
    # latest eval at or before that time
    base = args.d3s_methods[0]
    for m in args.d3s_methods[1:]:
        for g, d in zip(per[base], per[m]):
            t = min(d["wall_s"], g["wall_s"])
            d["base_acc_at_same_time"] = [a for c, a in g["curve"] if c <= t + 1e-9][-1]
            d["acc_at_same_time"] = [a for c, a in d["curve"] if c <= t + 1e-9][-1]
            d["same_time_s"] = t
    table = []
    for m, runs in per.items():
        for r in runs:
            table.append({"method": m, "seed": r["seed"], **{k: v for k, v in r.items() if k not in ("curve", "seed")}})
    print_table(f"{' vs '.join(per)}, {args.steps} steps from greedy {start['greedy_accuracy']:.3f}", table,
                ["method", "seed", "tokens_per_step", "forward_tokens_per_step", "samples_per_step", "learner_s_per_step",
                 "step_s", "wall_s", "final", "same_time_s", "base_acc_at_same_time", "acc_at_same_time"])
    plot_runs([("training wall-clock (s, evals excluded)", {m: [r["curve"] for r in runs] for m, runs in per.items()})],
              out / "d3s_wallclock.png", f"{' vs '.join(per)}: {len(args.seeds)} seeds, {args.steps} steps", "held-out greedy accuracy")
    summary: dict[str, Any] = {
        m: {"final_mean": mean(r["final"] for r in runs), "tokens_per_step": mean(r["tokens_per_step"] for r in runs),
            "token_ratio": mean(r["tokens_per_step"] for r in runs) / mean(r["tokens_per_step"] for r in per[base]),
            "step_s": mean(r["step_s"] for r in runs), "wall_s_mean": mean(r["wall_s"] for r in runs),
            **({"equal_time": {base: mean(r["base_acc_at_same_time"] for r in runs), m: mean(r["acc_at_same_time"] for r in runs)}}
               if m != base else {})}
        for m, runs in per.items()
    }
    print_table("mean over seeds", [{"method": m, **{k: v for k, v in s.items() if k != "equal_time"},
                                     **({"base_at_same_time": s["equal_time"][base], "at_same_time": s["equal_time"][m]} if "equal_time" in s else {})}
                                    for m, s in summary.items()],
                ["method", "tokens_per_step", "token_ratio", "step_s", "wall_s_mean", "final_mean", "base_at_same_time", "at_same_time"])
    return {"runs": per, "summary": summary, "greedy_start": start["greedy_accuracy"]}


def main(argv=None) -> None:
    args = parse_args(argv)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    load = loadavg()
    sft = sft_checkpoint(out, args.recipe, args.sft_steps)
    path = out / "results.json"
    results: dict[str, Any] = json.loads(path.read_text()) if path.is_file() else {}  # parts run before are kept
    for part in args.parts:
        before, t_part = len(TRAINED), time.time()
        machine = results.get(part, {}).get("machine")
        results[part] = {"overhead": overhead, "unlikeliness": unlikeliness, "d3s": d3s}[part](args, out, sft)
        if len(TRAINED) > before or machine is None:  # a table re-read from earlier runs keeps their machine record
            machine = {**machine_info(load, threads=1), "wall_s": time.time() - t_part}
        results[part].update({"args": vars(args), "machine": machine})
        write_json(path, {**results, "sft": sft})
    print(f"wrote {out / 'results.json'}")


if __name__ == "__main__":
    main()
