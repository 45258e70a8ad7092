"""SFT benchmark: held-out greedy accuracy of the tiny model on 2-digit addition vs wall time.

Runs `rlpost sft recipes/tiny-arith-sft.yaml` (fresh, no SFT cache reuse) `--repeats` times with
`--threads` torch threads and reports wall time (model build + training + save) and greedy
accuracy on the 500 held-out problems. Bar (issue 2): >= 80% within 3 minutes on 2 cores.

    OMP_NUM_THREADS=2 HF_HUB_OFFLINE=1 python scripts/bench/sft_arith.py --threads 2 --repeats 1
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import loadavg, machine_info, median, print_table, write_json  # noqa: E402


def run_once(threads: int, overrides: list[str]) -> dict:
    from rlpost.cli import _quiet_libraries
    from rlpost.config import load_config
    from rlpost.evaluate import evaluate
    from rlpost.models.loading import load_tokenizer
    from rlpost.rollout.hf_engine import HFEngine
    from rlpost.scoring import make_verifier_runner
    from rlpost.sft import run_sft

    _quiet_libraries()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = load_config("tiny-arith-sft", [f"run.output_dir={tmp}", f"run.threads={threads}", *overrides])
        t0 = time.perf_counter()
        out = run_sft(cfg)
        train_s = time.perf_counter() - t0
        engine = HFEngine(out, seed=0, batch_size=512, threads=threads)
        with make_verifier_runner(cfg) as runner:
            result = evaluate(cfg, engine, load_tokenizer(out), runner)
        return {"train_s": train_s, "eval_s": time.perf_counter() - t0 - train_s, **result}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--out", default="runs/bench/sft_arith.json")
    ap.add_argument("overrides", nargs="*", help="recipe overrides, e.g. sft.steps=800")
    args = ap.parse_args()
    load0 = loadavg()
    runs = [run_once(args.threads, args.overrides) for _ in range(args.repeats)]
    rows = [
        {"run": i, "train_s": f"{r['train_s']:.1f}", "greedy_accuracy": f"{r['greedy_accuracy']:.3f}", "n_prompts": r["n_prompts"]}
        for i, r in enumerate(runs)
    ]
    print_table(f"tiny-arith-sft, {args.threads} threads", rows, ["run", "train_s", "greedy_accuracy", "n_prompts"])
    summary = {
        "median_train_s": median(r["train_s"] for r in runs),
        "median_greedy_accuracy": median(r["greedy_accuracy"] for r in runs),
        "runs": runs,
        "overrides": args.overrides,
        "machine": machine_info(load0, args.threads),
    }
    print(f"median: {summary['median_train_s']:.1f} s, greedy accuracy {summary['median_greedy_accuracy']:.3f}")
    write_json(args.out, summary)


if __name__ == "__main__":
    main()
