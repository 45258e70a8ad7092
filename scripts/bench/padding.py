"""Length-sorted micro-batches vs the batch's own order: padding share and learner update time.

One ``Learner.update`` over a GRPO-shaped batch (``--prompts`` x ``--n`` completions whose lengths are
drawn uniformly from ``--min-len``..``--max-len``, as reasoning completions vary) cut into micro-batches
of ``--micro-batch``; the two orders alternate in one process, medians of ``--repeats``. Model: the
~50M random Qwen2 of rollout_throughput.py (--size medium) or the tiny one (--size tiny).

    OMP_NUM_THREADS=2 python scripts/bench/padding.py
"""
from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO))
from common import loadavg, machine_info, median, print_table, write_json  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", choices=["tiny", "medium"], default="tiny")
    p.add_argument("--prompts", type=int, default=8)
    p.add_argument("--n", type=int, default=8)
    p.add_argument("--prompt-tokens", type=int, default=32)
    p.add_argument("--min-len", type=int, default=8)
    p.add_argument("--max-len", type=int, default=128)
    p.add_argument("--micro-batch", type=int, default=16)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--out", default="runs/bench/padding.json")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch

    import rlpost.learner.learner as learner_module
    from rlpost.config import Config, TinyModelConfig
    from rlpost.learner.learner import Learner, _chunks
    from rlpost.types import TrainBatch, TrainSample

    if args.size == "medium":
        from rollout_throughput import build_medium

        path = build_medium(REPO / "runs" / "bench" / "rollout_models" / "qwen2-medium-32k")
    else:
        from rlpost.models.tiny import build_tiny_model

        path = build_tiny_model(TinyModelConfig(), REPO / "runs" / "bench" / "models")
    rng = random.Random(0)
    samples = []
    for i in range(args.prompts):
        prompt = [3 + (5 * i + j) % 90 for j in range(args.prompt_tokens)]
        for _ in range(args.n):
            k = rng.randint(args.min_len, args.max_len)
            samples.append(TrainSample(prompt, [3 + rng.randrange(90) for _ in range(k)], [-1.0] * k, rng.choice([-1.0, 1.0])))
    batch = TrainBatch(samples)
    cfg = Config.model_validate({"train": {"micro_batch_size": args.micro_batch}, "optim": {"name": "sgd", "lr": 0.0}})
    learner = Learner(cfg, str(path))
    sorted_cut = learner_module.micro_batches
    orders = {"batch order": lambda idx, s, size: _chunks(idx, size), "length-sorted": sorted_cut}
    times: dict[str, list[float]] = {k: [] for k in orders}
    padding: dict[str, float] = {}
    load = loadavg()
    for r in range(args.repeats + 1):
        for name, cut in orders.items():
            learner_module.micro_batches = cut
            t0 = time.perf_counter()
            m = learner.update(batch)
            if r:  # the first round is the warm-up
                times[name].append(time.perf_counter() - t0)
            padding[name] = m["learner/padding_frac"]
    learner_module.micro_batches = sorted_cut
    base = median(times["batch order"])
    rows = [{"order": k, "padding of completion positions": padding[k], "update s (median)": median(v),
             "speed-up": base / median(v)} for k, v in times.items()]
    title = (f"padding: {args.size} model, {args.prompts}x{args.n} completions of {args.min_len}-{args.max_len} tokens, "
             f"micro-batches of {args.micro_batch}, {torch.get_num_threads()} thread(s), load {load}")
    print_table(title, rows, ["order", "padding of completion positions", "update s (median)", "speed-up"])
    out = {"benchmark": "padding", "config": vars(args), "rows": rows, "times": times,
           "machine": machine_info(load, threads=torch.get_num_threads())}
    print(f"padding: wrote {write_json(args.out, out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
