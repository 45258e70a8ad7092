"""Scale-out on Ray: steps/s and rollout tokens/s with 1 vs 2 rollout workers, 1 vs 2 learner ranks,
synchronous vs one-step-off, and the scaling to 8 nodes modelled from the measured per-phase times.

    OMP_NUM_THREADS=1 python scripts/bench/scale_out.py [--steps 20] [--repeats 3] [--model HF_FOLDER] [--out runs/bench/scale_out.json]

Every configuration is the quickstart's RL phase (32 prompts x 16 samples, 6 new tokens, the math
verifier) from one SFT checkpoint, on a fresh local Ray cluster, one torch thread per actor, in its own
process; the first ``--warmup`` steps are left out of the medians. Writes JSON and a PNG of the model.

The model (one rollout worker and one learner rank per node, K nodes; "wait" is the update as the driver
sees it, "verify" the verifiers and rewards on the driver, "rest" the remainder of the step):
  gen(K)    = gen(1) * g2^log2(K)         g2 = gen(2 workers) / gen(1)   (measured split efficiency)
  wait(K)   = s / K + f + ar(2) * 2(K-1)/K  the update's part that splits over ranks (s) and the part that
            does not (f: per-op overhead of a small model), from wait(1) = s + f and wait(2 ranks) = s/2 + f + ar(2);
            ar(2): the measured all-reduce (and waiting for the other rank) per step, ring-scaled
  sync(K)   = sync(1) + (sync(2 workers) - sync(1)) * (K - 1)   (the export fanned out to every worker)
  verify(K) = verify(1) (one verifier process, as the recipe has), or verify(1) / K (verify.num_workers=K)
  step      = gen + verify + wait + sync + rest            (synchronous)
  step      = max(gen + verify, wait) + sync + rest        (one-step-off: the next batch is made during the update)
All terms are measured on this machine's loopback; over a real network the all-reduce and the fan-out
grow with the bandwidth ratio: the JSON keeps every term so they can be rescaled.
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import loadavg, machine_info, median, print_table, write_json  # noqa: E402
from rl_runs import RUN, rows, run_pair, start  # noqa: E402

CONFIGS = {  # name: (rollout workers, learner ranks, one-step-off, verifier processes)
    "1w-1r-sync": (1, 1, False, 1),
    "2w-1r-sync": (2, 1, False, 1),
    "1w-2r-sync": (1, 2, False, 1),
    "2w-2r-sync": (2, 2, False, 1),
    "2w-2r-sync-2v": (2, 2, False, 2),
    "1w-1r-async": (1, 1, True, 1),
    "2w-2r-async": (2, 2, True, 1),
}
PHASES = ("time/step", "time/gen", "time/verify", "time/reward", "time/update", "time/allreduce", "time/sync", "time/wait")


def overrides(workers: int, ranks: int, off: bool, verifiers: int, steps: int, model: str) -> list[str]:
    return ["recipes/quickstart.yaml", *RUN, f"model.path={model}", "cluster.mode=ray", f"cluster.rollout_workers={workers}",
            f"cluster.learner_ranks={ranks}", f"cluster.num_cpus={workers + ranks}", f"train.async_rollout={str(off).lower()}",
            f"verify.num_workers={verifiers}",
            f"train.steps={steps}", "train.eval_every=0", "train.eval_after=false", "train.parity_check_every=0"]


def summarize(name: str, metrics: list[dict], warmup: int) -> dict:
    timed = metrics[warmup:]
    out = {"config": name, "steps": len(timed)}
    for key in PHASES:
        out[key.split("/")[1]] = median(r.get(key, 0.0) for r in timed)
    out["steps/s"] = 1 / out["step"]
    tokens = median(r["train/tokens_forward"] for r in timed)
    out["rollout tok/s"] = tokens / out["gen"] if out["gen"] > 0 else float("nan")
    out["tokens/step"] = tokens
    out["verify"] += out.pop("reward")
    out["rest"] = out["step"] - out["gen"] - out["verify"] - out["wait"] - out["sync"]  # one-step-off: negative (overlap)
    out["mismatch"] = median(r.get("learner/logprob_mismatch", 0.0) for r in timed)
    out["mismatch_max"] = max(r.get("learner/logprob_mismatch", 0.0) for r in timed)
    for w in range(2):
        key = f"learner/logprob_mismatch_worker{w}"
        if any(key in r for r in timed):
            out[f"mismatch_w{w}"] = median(r[key] for r in timed if key in r)
    out["accuracy"] = median(r.get("train/accuracy", float("nan")) for r in timed)
    return out


def combine(runs: list[dict]) -> dict:
    """One configuration over its repeats: the median of each number, and every repeat's step time."""
    out = {k: (median(r[k] for r in runs if k in r) if isinstance(v, float) else v) for k, v in runs[0].items()}
    out["steps/s"] = 1 / out["step"]
    out["step per repeat"] = [round(r["step"], 4) for r in runs]
    return out


def model(res: dict[str, dict], nodes: list[int]) -> list[dict]:
    one, two_w, two_r = res["1w-1r-sync"], res["2w-1r-sync"], res["1w-2r-sync"]
    g2 = two_w["gen"] / one["gen"]
    allreduce = two_r["allreduce"]  # one optimizer step per update in the quickstart recipe
    splits = min(max(2 * (one["wait"] - two_r["wait"] + allreduce), 0.0), one["wait"])
    fixed = one["wait"] - splits
    fan = max(two_w["sync"] - one["sync"], 0.0)
    out = []
    for k in nodes:
        gen = one["gen"] * g2 ** math.log2(k)
        wait = splits / k + fixed + allreduce * 2 * (k - 1) / k
        sync = one["sync"] + fan * (k - 1)
        row = {"nodes": k, "gen": gen, "wait": wait, "of which all-reduce": allreduce * 2 * (k - 1) / k, "sync": sync,
               "rest": one["rest"]}
        for tag, verify in (("1 verifier", one["verify"]), ("K verifiers", one["verify"] / k)):
            sync_step = gen + verify + wait + sync + one["rest"]
            async_step = max(gen + verify, wait) + sync + one["rest"]
            row[f"sync x, {tag}"] = one["step"] / sync_step
            row[f"async x, {tag}"] = one["step"] / async_step
        out.append(row)
    return out


def plot(modelled: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ks = [m["nodes"] for m in modelled]
    fig, ax = plt.subplots(figsize=(5.5, 4))
    ax.plot(ks, ks, "k:", label="linear")
    for i, tag in enumerate(("1 verifier", "K verifiers")):
        ax.plot(ks, [m[f"sync x, {tag}"] for m in modelled], "o-", color=f"C{i}", label=f"synchronous, {tag}")
        ax.plot(ks, [m[f"async x, {tag}"] for m in modelled], "s--", color=f"C{i}", label=f"one-step-off, {tag}")
    ax.set_xlabel("nodes (1 rollout worker + 1 learner rank each)")
    ax.set_ylabel("speed-up over 1 node, synchronous")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log", base=2)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3, help="steps left out of the medians")
    p.add_argument("--sft-steps", type=int, default=500)
    p.add_argument("--model", help="HF folder to start from instead of the quickstart's SFT checkpoint (with --out elsewhere)")
    p.add_argument("--configs", default=",".join(CONFIGS), help="comma-separated subset of " + ", ".join(CONFIGS))
    p.add_argument("--repeats", type=int, default=3, help="runs per configuration (same seed: the timing repeats)")
    p.add_argument("--out", default="runs/bench/scale_out.json")
    args = p.parse_args()
    if args.model:  # a model of your own (an HF folder): its terms, where compute may dominate
        folder, load, ckpt = Path(args.out).with_suffix("").resolve(), loadavg(), str(Path(args.model).resolve())
        folder.mkdir(parents=True, exist_ok=True)
    else:
        folder, load, _, ckpt = start(str(Path(args.out).with_suffix("")), "recipes/quickstart.yaml", args.sft_steps)
    names = args.configs.split(",")
    per_repeat: dict[str, list[dict]] = {name: [] for name in names}
    for r in range(args.repeats):  # every configuration once per repeat, so they share the machine's moods
        for name in names:
            run_dir = folder / f"{name}-r{r}"
            if not (run_dir / "metrics.jsonl").is_file() or len(rows(run_dir)) < args.steps:
                run_pair([(Path.cwd(), run_dir, overrides(*CONFIGS[name], args.steps, ckpt))])
            per_repeat[name].append(summarize(name, rows(run_dir), args.warmup))
    results = {name: combine(runs) for name, runs in per_repeat.items()}
    print_table(f"scale-out, measured (seconds; medians over steps, then over {args.repeats} repeats)", list(results.values()),
                ["config", "steps/s", "step", "step per repeat", "gen", "verify", "wait", "update", "allreduce", "sync", "rest", "rollout tok/s", "mismatch",
                 "mismatch_max", "mismatch_w0", "mismatch_w1"])
    modelled = model(results, [1, 2, 4, 8]) if {"1w-1r-sync", "2w-1r-sync", "1w-2r-sync"} <= results.keys() else []
    if modelled:
        print_table("modelled scaling (one rollout worker and one learner rank per node)", modelled,
                    ["nodes", "gen", "wait", "of which all-reduce", "sync", "rest", "sync x, 1 verifier", "async x, 1 verifier", "sync x, K verifiers",
                     "async x, K verifiers"])
        plot(modelled, Path(args.out).with_suffix(".png"))
    write_json(args.out, {"measured": results, "modelled": modelled, "checkpoint": ckpt, "args": vars(args),
                          "machine": machine_info(load, threads=1)})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
