"""Learner forward+backward with and without the shared-prefix forward, for short and long prompts.

A GRPO batch of P prompts x n completions: the plain forward runs every row's prompt; the shared one
runs each distinct prompt once and the completions on its KV cache (docs/performance.md). Both are
timed in one process, alternating, on the tiny Qwen2 (hidden 128, 4 layers) the project builds:

    OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 python scripts/bench/shared_prefix.py
"""
from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def batch(prompts: int, n: int, prompt_len: int, max_completion: int, seed: int = 0):
    rng = random.Random(seed)
    p_ids, c_ids = [], []
    for _ in range(prompts):
        p = [rng.randint(3, 100) for _ in range(prompt_len)]
        for _ in range(n):
            p_ids.append(p)
            c_ids.append([rng.randint(3, 100) for _ in range(rng.randint(max(1, max_completion // 2), max_completion))])
    return p_ids, c_ids


def time_fwd_bwd(model, prompts, comps, share: bool) -> float:
    from rlpost.models.forward import completion_logprobs

    t0 = time.perf_counter()
    logp, mask, _ = completion_logprobs(model, prompts, comps, 0, with_entropy=True, share_prefix=share)
    ((logp * mask).sum() / mask.sum()).backward()
    model.zero_grad(set_to_none=True)
    return time.perf_counter() - t0


def main() -> int:
    from common import loadavg, machine_info, median, print_table, write_json

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=7, help="timed calls per setting and mode (after 2 warm-ups)")
    p.add_argument("--out", default="runs/bench/shared_prefix.json")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    load_before = loadavg()

    from rlpost.config import TinyModelConfig
    from rlpost.models.loading import load_model
    from rlpost.models.tiny import build_tiny_model

    path = build_tiny_model(TinyModelConfig(), Path("runs/bench/rollout_models"))
    model = load_model(str(path), "float32").train()
    settings = [  # (name, prompts, n, prompt tokens, max completion tokens)
        ("arithmetic-like", 8, 8, 6, 7),
        ("prompt 64, n 8", 8, 8, 64, 16),
        ("prompt 256, n 8", 4, 8, 256, 16),
    ]
    rows = []
    for name, n_prompts, n, plen, clen in settings:
        prompts, comps = batch(n_prompts, n, plen, clen)
        times = {False: [], True: []}
        for i in range(args.repeats + 2):
            for share in (False, True):
                t = time_fwd_bwd(model, prompts, comps, share)
                if i >= 2:
                    times[share].append(t)
        plain, shared = median(times[False]), median(times[True])
        rows.append({"setting": name, "rows": len(prompts), "prompt tokens": plen, "max completion": clen,
                     "plain ms": plain * 1e3, "shared ms": shared * 1e3, "speed-up": plain / shared})
    print_table(f"learner forward+backward, plain vs shared prefix ({args.threads} thread(s), medians of {args.repeats})",
                rows, list(rows[0]))
    out = write_json(args.out, {"benchmark": "shared_prefix", "rows": rows,
                                "machine": machine_info(load_before, threads=args.threads)})
    print(f"shared_prefix: wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
