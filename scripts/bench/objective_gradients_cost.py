"""What the gradient-based reward weighting adds to a step: time and peak memory of the learner's
``objective_gradients`` (one backward pass per objective) next to one ``update``, for full and LoRA
updates, on one batch of the multi-objective task's shape (256 completions of 16 tokens).

Each measurement runs in a fresh process (peak RSS only grows within a process): ``update`` alone,
then ``update`` plus ``objective_gradients`` with 3 objectives. Run from the repository root:

    OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 python scripts/bench/objective_gradients_cost.py --model runs/bench/multi_objective/sft

Writes <out>/results.json and prints a table.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from common import loadavg, machine_info, mean, print_table, write_json  # noqa: E402
from rl_runs import REPO, env  # noqa: E402

# One measurement in a child process: prints {"update_s", "gradients_s", "rss_mb", "gradient_bytes"} as JSON.
CHILD = r"""
import json, random, resource, sys, time
from rlpost.config import load_config
from rlpost.learner.learner import Learner
from rlpost.types import TrainBatch, TrainSample

model, update, objectives, repeats = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
cfg = load_config("multi-objective", ["model.source=hf", f"model.path={model}", f"learner.update={update}", "train.micro_batch_size=256"]
                  + (["optim.lr=1e-3"] if update == "lora" else []))
learner = Learner(cfg, model)
rng = random.Random(0)
samples = [TrainSample([rng.randrange(3, 90) for _ in range(8)], [rng.randrange(3, 90) for _ in range(16)], [-1.0] * 16, rng.gauss(0, 1))
           for _ in range(256)]
batch = TrainBatch(samples, 1.0, 16)
out = {"update_s": [], "gradients_s": [], "gradient_bytes": 0}
for _ in range(repeats):
    t0 = time.perf_counter()
    learner.update(batch)
    out["update_s"].append(time.perf_counter() - t0)
    if objectives:
        adv = [[rng.gauss(0, 1) for _ in samples] for _ in range(objectives)]
        res = learner.objective_gradients(batch, adv)
        out["gradients_s"].append(res["seconds"])
        out["gradient_bytes"] = res["bytes"]
out["rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps(out))
"""


def measure(model: str, update: str, objectives: int, repeats: int) -> dict:
    proc = subprocess.run([sys.executable, "-c", CHILD, model, update, str(objectives), str(repeats)], cwd=REPO, env=env(),
                          capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=str(REPO / "runs" / "bench" / "multi_objective" / "sft"))
    p.add_argument("--objectives", type=int, default=3)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", default=str(REPO / "runs" / "bench" / "objective_gradients_cost"))
    args = p.parse_args(argv)
    load, t0 = loadavg(), time.time()
    table = []
    for update in ("full", "lora"):
        alone = measure(args.model, update, 0, args.repeats)
        both = measure(args.model, update, args.objectives, args.repeats)
        table.append({
            "update": update, "update_s": mean(both["update_s"]), "gradients_s": mean(both["gradients_s"]),
            "time_ratio": mean(both["gradients_s"]) / mean(both["update_s"]), "rss_update_mb": alone["rss_mb"],
            "rss_with_gradients_mb": both["rss_mb"], "extra_rss_mb": both["rss_mb"] - alone["rss_mb"],
            "gradient_mb": both["gradient_bytes"] / 2**20,
        })
    print_table(f"objective_gradients ({args.objectives} objectives) vs one update, 256 x 16-token completions, 1 thread, "
                f"{args.repeats} repeats", table, list(table[0]))
    out = Path(args.out)
    write_json(out / "results.json", {"args": vars(args), "rows": table, "machine": machine_info(load, threads=1), "wall_s": time.time() - t0})
    print(f"wrote {out / 'results.json'}")


if __name__ == "__main__":
    main()
