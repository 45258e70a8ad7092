"""How well do NExt's predictors and the linear baseline predict a real LoRA trajectory?

One plain LoRA GRPO run of the quickstart task saves its LoRA factors every --interval steps (through
``SaveSnapshots``, a callback plugged in by path from this file). Offline, each method is fitted on the
snapshots up to --observe, as the callbacks fit them, and its predicted movement ``h`` steps ahead is
compared with the movement the run really made from W_T to W_{T+h}: cosine (direction) and norm ratio
(size), over all adapted matrices stacked, and the share of the true movement that the rank-1 part
of each matrix's own delta carries (how much any rank-1 predictor can capture). Run from the root:

    OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 python scripts/bench/next_trajectory.py

Writes <out>/trajectory.json and <out>/trajectory.png and prints a table.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


class SaveSnapshots:
    """Callback: the learner's LoRA factors every ``interval`` steps, to ``<folder>/step_<t>.pt``."""

    def __init__(self, folder: str, interval: int = 5) -> None:
        self.folder, self.interval = Path(folder), interval

    def after_step(self, ctx):
        import torch

        t = ctx.step + 1
        if t % self.interval == 0:
            self.folder.mkdir(parents=True, exist_ok=True)
            torch.save(ctx.read_weights("lora"), self.folder / f"step_{t:04d}.pt")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--recipe", default="recipes/quickstart.yaml")
    p.add_argument("--steps", type=int, default=150)
    p.add_argument("--interval", type=int, default=5)
    p.add_argument("--observe", type=int, default=50)
    p.add_argument("--horizon", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sft-steps", type=int, default=500)
    p.add_argument("--out", default="runs/bench/next-trajectory")
    p.add_argument("--set", nargs="*", default=[], help="extra overrides for the run (key=value)")
    return p.parse_args(argv)


def predictions(steps, snaps, horizon: int, ahead: list[int]) -> dict[str, dict[int, dict]]:
    """Per method, per h: the predicted update of every matrix (fitted on ``steps``/``snaps``)."""
    from rlpost.algos.next import fit_predictor, linear_updates, predict_updates, trajectory, training_rows

    points = trajectory(steps, snaps, {}, horizon)
    rows = training_rows(points, 1)
    out = {"linear": {h: linear_updates(steps, snaps, {}, ahead=h) for h in ahead}}
    variants = {
        "next (paper: mlp lr 2e-5, sigma affine)": {"lr": 2e-5, "kinds": ("mlp", "affine")},
        "next (mlp lr 1e-3, sigma affine)": {"lr": 1e-3, "kinds": ("mlp", "affine")},
        "next (all affine)": {"lr": 0.0, "kinds": ("affine", "affine")},
    }
    for name, v in variants.items():
        fits = {key: fit_predictor(r, kind=v["kinds"][key[0] == "sigma"], lr=v["lr"] or 1e-3) for key, r in rows.items()}
        updates, _ = predict_updates(points, fits, 1)
        out[name] = {h: {n: u * (h / horizon) for n, u in updates.items()} for h in ahead}
        out[name]["fit"] = {str(k): [f.first_loss, f.loss, f.active] for k, f in fits.items()}
    return out


def compare(pred: dict, true: dict) -> tuple[float, float]:
    import torch

    names = sorted(true)
    p = torch.cat([pred.get(n, torch.zeros_like(true[n])).flatten().double() for n in names])
    t = torch.cat([true[n].flatten().double() for n in names])
    return float(p @ t / (p.norm() * t.norm() + 1e-30)), float(p.norm() / t.norm())


def main(argv=None) -> None:
    args = parse_args(argv)
    import json

    import torch

    from common import loadavg, machine_info, print_table, write_json
    from rl_runs import REPO, RUN, run_pair, sft_checkpoint

    from rlpost.algos.next import delta, dense_delta, top_components

    out = (REPO / args.out).resolve()
    load, t0 = loadavg(), time.time()
    sft = sft_checkpoint(out, args.recipe, args.sft_steps)
    run_dir, snap_dir = out / "run", out / "snapshots"
    if not (run_dir / "eval_after.json").is_file():
        cb = f"callbacks=[{{name: snapshots, fn: '{Path(__file__).resolve()}:SaveSnapshots', kwargs: {{folder: '{snap_dir}', interval: {args.interval}}}}}]"
        run_pair([(REPO, run_dir, [args.recipe, *RUN, f"model.path={sft}", "learner.update=lora", "optim.lr=5.0e-4",
                                   f"train.steps={args.steps}", f"run.seed={args.seed}", cb, *args.set])])
    files = sorted(snap_dir.glob("step_*.pt"))
    traj = {int(f.stem[5:]): torch.load(f, weights_only=False) for f in files}
    steps = [t for t in sorted(traj) if t <= args.observe]
    ahead = [h for h in range(args.interval, args.steps - args.observe + 1, args.interval) if args.observe + h in traj]
    preds = predictions(steps, [traj[t] for t in steps], args.horizon, ahead)

    W_T = traj[args.observe]
    rows, curves = [], {m: [] for m in preds}
    for h in ahead:
        true = {n: dense_delta(traj[args.observe + h][n], W_T[n]) for n in W_T}
        rank1 = {n: top_components(delta(traj[args.observe + h][n], W_T[n])).dense() for n in W_T}
        row = {"h": h, "true_norm": sum(float(t.norm()) ** 2 for t in true.values()) ** 0.5,
               "rank1_share": compare(rank1, true)[0]}
        for m, per_h in preds.items():
            cos, ratio = compare(per_h[h], true)
            row[f"{m}: cos"], row[f"{m}: size"] = cos, ratio
            curves[m].append((h, cos))
        rows.append(row)
    cols = list(rows[0])
    print_table(f"predicted vs true movement from step {args.observe} (fitted on steps {steps[0]}..{steps[-1]}, horizon {args.horizon})", rows, cols)
    from common import plot_runs

    plot_runs([("steps ahead of the jump (h)", {m: [c] for m, c in curves.items()})], out / "trajectory.png",
              f"cosine of predicted vs true LoRA movement from step {args.observe}", "cosine (all matrices stacked)")
    final = json.loads((run_dir / "eval_after.json").read_text())["greedy_accuracy"]
    write_json(out / "trajectory.json", {"args": vars(args), "rows": rows, "final_greedy": final,
                                         "fits": {m: p.get("fit") for m, p in preds.items()},
                                         "machine": machine_info(load, threads=1), "wall_s": time.time() - t0})


if __name__ == "__main__":
    main()
