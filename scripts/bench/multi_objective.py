"""Fixed linear weights vs hypervolume-guided scaling vs gradient-based weights on a task whose three
objectives conflict for the tiny model (recipes/multi-objective.yaml: correct, short, work shown), from
one SFT checkpoint, the same RL steps, 3 seeds each.

Every run is evaluated on the held-out split every --eval-every steps; each evaluation is one objective
vector (the mean of each reward on the greedy completions). A run's front is the non-dominated set of
its evaluations, and its hypervolume is measured above one reference point shared by every run: the
origin (every reward is in [0, 1]), and, as the paper's meta-reward does, the SFT checkpoint's own
vector (the starting policy; on this task no policy beats it in all three objectives, so this volume is
mostly 0). Run from the repository root:

    OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 python scripts/bench/multi_objective.py
    python scripts/bench/multi_objective.py --seeds 0 --steps 20 --out runs/bench/mo-quick

Writes <out>/results.json and <out>/fronts.png and prints tables.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from common import machine_info, mean, print_table, write_json  # noqa: E402
from rl_runs import REPO, RUN, eval_checkpoint, rows, seed_runs, start  # noqa: E402

OBJECTIVES = ["correctness", "conciseness", "format"]


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recipe", default="recipes/multi-objective.yaml")
    p.add_argument("--methods", nargs="+", default=["fixed", "hypervolume", "gradient"],
                   choices=["fixed", "fixed-concise", "hypervolume", "hypervolume-reward", "gradient"],
                   help="fixed-concise weighs conciseness double (0.25, 0.5, 0.25); hypervolume scales the advantages, "
                   "hypervolume-reward the rewards, as the paper (a no-op under GRPO)")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--parallel", type=int, default=3, help="runs side by side (a seed's methods share the load)")
    p.add_argument("--eval-every", type=int, default=10)
    p.add_argument("--eval-prompts", type=int, default=200)
    p.add_argument("--val-prompts", type=int, default=64, help="the hypervolume method's per-step validation (training prompts)")
    p.add_argument("--mu", type=float, default=5.0e-4, help="the gradient method's regulariser: lr / mu is its step per unit influence")
    p.add_argument("--hv-scale", type=float, default=0.1, help="the hypervolume method's per-objective scale (raw units: 1)")
    p.add_argument("--sft-steps", type=int, default=800)
    p.add_argument("--out", default=str(REPO / "runs" / "bench" / "multi_objective"))
    p.add_argument("--set", nargs="*", default=[], help="extra overrides for every run (key=value)")
    return p.parse_args(argv)


def methods(args: argparse.Namespace) -> dict[str, list[str]]:
    s = args.hv_scale
    hv = f"name: hypervolume, kwargs: {{prompts: {args.val_prompts}, reference: [0, 0, 0], scale: [{s}, {s}, {s}], apply_to: %s}}"
    return {
        "fixed": [],
        "fixed-concise": ["algo.combiner={name: fixed, kwargs: {weights: {correctness: 0.25, conciseness: 0.5, format: 0.25}}}"],
        "hypervolume": ["algo.combiner={" + hv % "advantage" + "}"],
        "hypervolume-reward": ["algo.combiner={" + hv % "reward" + "}"],
        "gradient": [f"algo.combiner={{name: gradient, kwargs: {{mu: {args.mu}}}}}"],
    }


def vector(result: dict[str, Any]) -> list[float]:
    return [float(result[f"reward/{k}"]) for k in OBJECTIVES]


def evals(run_dir: Path) -> list[tuple[int, list[float]]]:
    """(step, objective vector) of every held-out evaluation of the run, the last one included."""
    out = [(r["step"] + 1, [r[f"eval/reward/{k}"] for k in OBJECTIVES]) for r in rows(run_dir) if "eval/reward/correctness" in r]
    final = json.loads((run_dir / "eval_after.json").read_text())
    return out + [(len(rows(run_dir)), vector(final))]


def summarize_run(run_dir: Path, sft: list[float]) -> dict[str, Any]:
    """The run's front and hypervolume over its evaluations (above the origin, and above the SFT point);
    per step, the hypervolume so far."""
    import numpy as np

    from rlpost.algos.weighting import hypervolume, nondominated

    points = evals(run_dir)
    ref = np.zeros(len(OBJECTIVES))
    curve = [(step, hypervolume(np.asarray([v for _, v in points[: i + 1]]), ref)) for i, (step, _) in enumerate(points)]
    vs = np.asarray([v for _, v in points])
    rs = rows(run_dir)
    weights = {k: [r.get(f"weights/{k}") for r in rs] for k in OBJECTIVES}
    return {
        "final": dict(zip(OBJECTIVES, points[-1][1])), "front": vs[nondominated(vs)].tolist(), "hv": curve[-1][1], "hv_curve": curve,
        "hv_final_point": hypervolume(vs[-1:], ref), "hv_above_sft": hypervolume(vs, np.asarray(sft)), "weights_last": {k: w[-1] for k, w in weights.items()}, "weights": weights,
        "rho": [r.get("hv/rho") for r in rs], "step_s": mean(r["time/step"] for r in rs),
        "gradient_s": mean(r.get("time/objective_gradients", 0.0) for r in rs), "update_s": mean(r.get("time/update", 0.0) for r in rs),
        "gradient_bytes": max(r.get("combine/gradient_bytes", 0.0) for r in rs),
    }


def plot(per: dict[str, list[dict]], reference: list[float], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(20, 4.3))
    for i, (m, runs) in enumerate(per.items()):
        for j, r in enumerate(runs):
            front = sorted(r["front"])
            label = m if j == 0 else None
            axes[0].scatter([p[0] for p in front], [p[1] for p in front], color=f"C{i}", s=18, alpha=0.7, label=label)
            axes[1].scatter([p[2] for p in front], [p[1] for p in front], color=f"C{i}", s=18, alpha=0.7, label=label)
            axes[2].plot([s for s, _ in r["hv_curve"]], [h for _, h in r["hv_curve"]], color=f"C{i}", alpha=0.7, label=label)
    for ax, (x, y) in zip(axes[:2], ((0, 1), (2, 1))):
        ax.scatter([reference[x]], [reference[y]], marker="x", color="black", label="SFT (reference)")
        ax.set_xlabel(f"held-out {OBJECTIVES[x]} (higher is better)")
        ax.set_ylabel(f"held-out {OBJECTIVES[y]} (higher is better)")
    axes[2].set_xlabel("RL step")
    axes[2].set_ylabel("hypervolume of the evaluations so far")
    for i, k in enumerate(OBJECTIVES):  # the gradient method's weights, every seed
        for j, r in enumerate(per.get("gradient", [])):
            axes[3].plot(r["weights"][k], color=f"C{i}", alpha=0.7, label=k if j == 0 else None)
    axes[3].set_xlabel("RL step")
    axes[3].set_ylabel("gradient method: weight")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    fig.suptitle(title, fontsize="medium")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> None:
    args = parse_args(argv)
    out, load, t0, sft = start(args.out, args.recipe, args.sft_steps)
    evaluation = [f"eval.limit={args.eval_prompts}"]
    reference = vector(eval_checkpoint(out, args.recipe, sft, evaluation))
    common = [args.recipe, *RUN, f"model.path={sft}", f"train.steps={args.steps}", f"train.eval_every={args.eval_every}", *evaluation, *args.set]
    chosen = {m: methods(args)[m] for m in args.methods}
    per: dict[str, list[dict]] = {m: [] for m in args.methods}
    for seed, m, run_dir in seed_runs(out / "runs", chosen, common, args.seeds, side_by_side=args.parallel):
        per[m].append({"seed": seed, **summarize_run(run_dir, reference)})
    cols = ["method", "seed", *OBJECTIVES, "hv", "hv_final_point", "hv_above_sft", "w_correctness", "w_conciseness", "w_format", "step_s", "update_s", "gradient_s"]
    table = [{"method": m, "seed": r["seed"], **r["final"], "hv": r["hv"], "hv_final_point": r["hv_final_point"], "hv_above_sft": r["hv_above_sft"],
              **{f"w_{k}": r["weights_last"][k] for k in OBJECTIVES}, "step_s": r["step_s"], "update_s": r["update_s"], "gradient_s": r["gradient_s"]}
             for m, runs in per.items() for r in runs]
    print_table(f"held-out objectives after {args.steps} steps; hypervolume above the origin (hv_above_sft: above the SFT point "
                f"{[round(x, 4) for x in reference]})", table, cols)
    base = args.methods[0]
    summary = {m: {**{k: mean(r["final"][k] for r in runs) for k in OBJECTIVES}, "hv": mean(r["hv"] for r in runs),
                   "hv_final_point": mean(r["hv_final_point"] for r in runs), "hv_above_sft": mean(r["hv_above_sft"] for r in runs), "step_s": mean(r["step_s"] for r in runs),
                   "gradient_s": mean(r["gradient_s"] for r in runs), "gradient_bytes": max(r["gradient_bytes"] for r in runs)}
               for m, runs in per.items()}
    for s in summary.values():
        s["hv_ratio"] = s["hv"] / summary[base]["hv"] if summary[base]["hv"] else float("nan")
        s["step_ratio"] = s["step_s"] / summary[base]["step_s"]
    print_table(f"mean over seeds {args.seeds}", [{"method": m, **s} for m, s in summary.items()],
                ["method", *OBJECTIVES, "hv", "hv_ratio", "hv_final_point", "hv_above_sft", "step_s", "step_ratio", "gradient_s", "gradient_bytes"])
    plot(per, reference, out / "fronts.png", f"{', '.join(args.methods)}: fronts of held-out evaluations every {args.eval_every} steps, "
         f"{len(args.seeds)} seeds, {args.steps} steps")
    write_json(out / "results.json", {
        "args": vars(args), "reference": dict(zip(OBJECTIVES, reference)), "summary": summary, "runs": per,
        "machine": machine_info(load, threads=1), "wall_s": time.time() - t0,
    })
    print(f"wrote {out / 'results.json'} and {out / 'fronts.png'}")


if __name__ == "__main__":
    main()
