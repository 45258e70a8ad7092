"""Plain GRPO with LoRA vs the linear-extrapolation baseline vs NExt: RL steps and wall-clock to a
target held-out accuracy, from one SFT checkpoint of the quickstart task, 3 seeds each.

The extrapolation runs observe the LoRA trajectory every --interval steps up to --observe, jump by
--coef x --horizon steps' worth of predicted movement, and continue RL to --steps (the curve after the
jump). The target is the plain runs' mean final accuracy (or --target). Steps to the target count every
RL step, the observed ones included; wall-clock counts training steps and the jump (predictor fit,
write-back, sync), not evaluations. Run from the repository root:

    OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 python scripts/bench/next.py            # 3 methods x 3 seeds
    python scripts/bench/next.py --seeds 0 --steps 40 --observe 20 --interval 5 --horizon 5 --out runs/bench/next-quick

Writes <out>/results.json and <out>/accuracy.png and prints tables.
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
from common import machine_info, mean, plot_runs, print_table, write_json  # noqa: E402
from rl_runs import REPO, RUN, rows, seed_runs, start  # noqa: E402

ACC = "greedy_accuracy"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recipe", default="recipes/quickstart.yaml")
    p.add_argument("--methods", nargs="+", default=["grpo", "linear", "next"], choices=["grpo", "linear", "next", "linear-select", "next-select"],
                   help="the first is the baseline; *-select choose coef from --grid on training prompts")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=150)
    p.add_argument("--interval", type=int, default=5)
    p.add_argument("--observe", type=int, default=50)
    p.add_argument("--horizon", type=int, default=20)
    p.add_argument("--coef", type=float, default=3.0)
    p.add_argument("--grid", default="[0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0]", help="coefficients the *-select methods score")
    p.add_argument("--next-kwargs", default="{}", help="extra NExt kwargs (YAML flow map), e.g. '{lr: 1.0e-3}'")
    p.add_argument("--target", type=float, default=None, help="default: the plain runs' mean final accuracy")
    p.add_argument("--eval-every", type=int, default=10)
    p.add_argument("--eval-prompts", type=int, default=500)
    p.add_argument("--sft-steps", type=int, default=500)
    p.add_argument("--out", default=str(REPO / "runs" / "bench" / "next"))
    p.add_argument("--set", nargs="*", default=[], help="extra overrides for every run (key=value)")
    return p.parse_args(argv)


def methods(args: argparse.Namespace) -> dict[str, list[str]]:
    shared = f"interval: {args.interval}, observe: {args.observe}, horizon: {args.horizon}"
    extra = args.next_kwargs.strip().strip("{}").strip()
    extra = ", " + extra if extra else ""
    out = {"grpo": []}
    for suffix, coef in (("", args.coef), ("-select", args.grid)):
        out["linear" + suffix] = [f"callbacks=[{{name: linear_extrapolation, kwargs: {{{shared}, coef: {coef}}}}}]"]
        out["next" + suffix] = [f"callbacks=[{{name: next, kwargs: {{{shared}, coef: {coef}{extra}}}}}]"]
    return out


def summarize_run(run_dir: Path) -> dict[str, Any]:
    """The run's accuracy curve against RL steps and wall-clock, and what its jump did."""
    rs = rows(run_dir)
    before = json.loads((run_dir / "eval_before.json").read_text())[ACC]
    final = json.loads((run_dir / "eval_after.json").read_text())[ACC]
    clock, curve, jump = 0.0, [{"step": 0, "wall_s": 0.0, "acc": before}], {}
    for r in rs:
        clock += r["time/step"]
        prefix = next((p for p in ("next", "linear") if f"{p}/update_norm" in r), None)
        if prefix:  # the jump: its evaluations either side, its cost (predictor fit, write-back, sync) between
            jump = {k.split("/", 1)[1]: v for k, v in r.items() if k.startswith(prefix + "/")}
            curve.append({"step": r["step"] + 1, "wall_s": clock, "acc": jump["accuracy_before"]})
            clock += jump["seconds"]
            curve.append({"step": r["step"] + 1, "wall_s": clock, "acc": jump["accuracy_after"]})
        if f"eval/{ACC}" in r:
            curve.append({"step": r["step"] + 1, "wall_s": clock, "acc": r[f"eval/{ACC}"]})
    curve.append({"step": len(rs), "wall_s": clock, "acc": final})
    return {"curve": curve, "start": before, "final": final, "steps": len(rs), "wall_s": clock, "jump": jump,
            "best": max(c["acc"] for c in curve)}


def reach(curve: list[dict], target: float) -> tuple[float | None, float | None]:
    """(steps, wall-clock) at the first evaluation at or above ``target``; None when never."""
    hit = next((c for c in curve if c["acc"] >= target - 1e-9), None)
    return (hit["step"], hit["wall_s"]) if hit else (None, None)


def main(argv=None) -> None:
    args = parse_args(argv)
    out, load, t0, sft = start(args.out, args.recipe, args.sft_steps)
    common = [args.recipe, *RUN, f"model.path={sft}", "learner.update=lora", "optim.lr=5.0e-4", f"train.steps={args.steps}",
              f"train.eval_every={args.eval_every}", f"eval.limit={args.eval_prompts}", "train.eval_before=true", *args.set]
    chosen = {m: methods(args)[m] for m in args.methods}
    per: dict[str, list[dict]] = {m: [] for m in args.methods}
    for seed, m, run_dir in seed_runs(out / "runs", chosen, common, args.seeds, side_by_side=2):
        per[m].append({"seed": seed, **summarize_run(run_dir)})
    target = args.target if args.target is not None else mean(r["final"] for r in per[args.methods[0]])
    for runs in per.values():
        for r in runs:
            r["steps_to_target"], r["wall_to_target"] = reach(r["curve"], target)
            for k in ("coef", "accuracy_before", "accuracy_after", "update_ratio", "predictor_loss", "predictor_loss_first", "seconds"):
                r[k] = r["jump"].get(k)
    cols = ["method", "seed", "start", "coef", "accuracy_before", "accuracy_after", "update_ratio", "predictor_loss_first", "predictor_loss",
            "seconds", "final", "best", "steps_to_target", "wall_to_target", "wall_s"]
    print_table(f"LoRA GRPO vs linear vs NExt: target accuracy {target:.3f} ({ACC}, {args.eval_prompts} held-out prompts)",
                [{"method": m, **r} for m, runs in per.items() for r in runs], cols)
    base = args.methods[0]
    summary = {}
    for m, runs in per.items():
        reached = [r for r in runs if r["steps_to_target"] is not None]
        summary[m] = {
            "reached": f"{len(reached)}/{len(runs)}", "final": mean(r["final"] for r in runs), "best": mean(r["best"] for r in runs),
            "accuracy_before": mean(r["accuracy_before"] for r in runs), "accuracy_after": mean(r["accuracy_after"] for r in runs),
            # runs that never reach the target count as the full run: a lower bound on their cost
            "steps_to_target": mean(r["steps_to_target"] or r["steps"] for r in runs),
            "wall_to_target": mean(r["wall_to_target"] or r["wall_s"] for r in runs),
        }
    for m, s in summary.items():
        s["steps_saved"] = 1 - s["steps_to_target"] / summary[base]["steps_to_target"]
        s["wall_saved"] = 1 - s["wall_to_target"] / summary[base]["wall_to_target"]
    print_table(f"mean over seeds {args.seeds} (not reached: counted as the whole run)", [{"method": m, **s} for m, s in summary.items()],
                ["method", "reached", "accuracy_before", "accuracy_after", "final", "best", "steps_to_target", "steps_saved",
                 "wall_to_target", "wall_saved"])
    plot_runs([(key, {m: [[(c[k], c["acc"]) for c in r["curve"]] for r in runs] for m, runs in per.items()})
               for k, key in (("step", "RL step"), ("wall_s", "training wall-clock (s, evals excluded)"))],
              out / "accuracy.png", f"LoRA GRPO, linear extrapolation and NExt (jump at step {args.observe}), {len(args.seeds)} seeds; "
              f"target {target:.3f}", f"held-out {ACC}")
    write_json(out / "results.json", {
        "args": vars(args), "target": target, "summary": summary, "runs": per,
        "machine": machine_info(load, threads=1), "wall_s": time.time() - t0,
    })
    print(f"wrote {out / 'results.json'} and {out / 'accuracy.png'}")


if __name__ == "__main__":
    main()
