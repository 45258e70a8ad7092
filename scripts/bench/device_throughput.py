"""Generation and training tokens/s of rlpost's HF engine and Learner on this machine's device.

One line per phase for a model of SmolLM2-135M's shape (Llama, hidden 576, 30 layers, 49k vocab; random
weights built locally, no download: speed does not depend on the values) or any HF folder (--model). On a
CUDA machine both run on the GPU in bf16 (fp32 master weights in the learner); elsewhere on the CPU. The GPU
check (scripts/gpu_check.sh) runs it; it also runs here, smaller:

    python scripts/bench/device_throughput.py                                   # GPU when there is one
    OMP_NUM_THREADS=2 python scripts/bench/device_throughput.py --prompts 2 --n 4 --max-new-tokens 32 --repeats 2

Generation: ``--prompts`` prompts x ``--n`` samples, ``--max-new-tokens`` each (sampling at T=1; a random
model rarely stops early, the table counts the tokens generated). Training: one ``Learner.update`` (forward,
backward, AdamW step) over those completions. Medians of ``--repeats`` after one warm-up. Writes JSON (--out).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
from common import loadavg, machine_info, median, print_table, write_json  # noqa: E402

# SmolLM2-135M-Instruct's config.json (the shape only).
SMOLLM2_135M = dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
                    num_key_value_heads=3, vocab_size=49152, max_position_embeddings=8192, tie_word_embeddings=True,
                    rms_norm_eps=1e-5, rope_theta=100000.0)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="HF model folder (default: a random model of SmolLM2-135M's shape)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--dtype", help="default: bfloat16 on CUDA, float32 on CPU")
    p.add_argument("--prompts", type=int, default=16)
    p.add_argument("--n", type=int, default=8)
    p.add_argument("--prompt-tokens", type=int, default=64)
    p.add_argument("--max-new-tokens", type=int, default=128)
    p.add_argument("--micro-batch", type=int, default=32, help="train.micro_batch_size of the learner")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", default="runs/bench/device_throughput.json")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch

    from rlpost.config import Config
    from rlpost.learner.learner import Learner
    from rlpost.rollout.hf_engine import HFEngine
    from rlpost.types import Request, SamplingParams, TrainBatch, TrainSample

    device = "cuda" if args.device == "auto" and torch.cuda.is_available() else ("cpu" if args.device == "auto" else args.device)
    dtype = args.dtype or ("bfloat16" if device == "cuda" else "float32")
    if args.model:
        path = Path(args.model)
    else:
        from rollout_throughput import build_random_model
        from transformers import LlamaConfig

        path = build_random_model(REPO / "runs" / "bench" / "rollout_models" / "smollm2-135m-shape", LlamaConfig, SMOLLM2_135M)
    load = loadavg()
    threads = torch.get_num_threads()
    engine = HFEngine(path, dtype, seed=0, batch_size=args.prompts * args.n, device=device)
    params = sum(p.numel() for p in engine.model.parameters())
    prompts = [[3 + (7 * i + j) % 90 for j in range(args.prompt_tokens)] for i in range(args.prompts)]
    sampling = SamplingParams(n=args.n, max_new_tokens=args.max_new_tokens, temperature=1.0)

    def sync() -> None:
        if device == "cuda":
            torch.cuda.synchronize()

    gen_s, gen_tokens, completions = [], 0, []
    for r in range(args.repeats + 1):
        sync()
        t0 = time.perf_counter()
        completions = engine.generate([Request(p, key=i) for i, p in enumerate(prompts)], sampling)
        sync()
        if r:  # the first is the warm-up
            gen_s.append(time.perf_counter() - t0)
    gen_tokens = sum(len(c.token_ids) for c in completions)
    del engine
    if device == "cuda":
        torch.cuda.empty_cache()

    cfg = Config.model_validate({
        "model": {"dtype": dtype, "device": device}, "cluster": {"learner_gpus": 1 if device == "cuda" else 0},
        "train": {"micro_batch_size": args.micro_batch}, "optim": {"lr": 1e-6},
    })
    learner = Learner(cfg, str(path))
    batch = TrainBatch([TrainSample(c.prompt_ids, c.token_ids, c.logprobs, 1.0 if i % 2 else -1.0) for i, c in enumerate(completions)])
    train_s = []
    for r in range(args.repeats + 1):
        sync()
        t0 = time.perf_counter()
        learner.update(batch)
        sync()
        if r:
            train_s.append(time.perf_counter() - t0)
    peak = torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else None
    rows = [
        {"phase": "generation", "tokens": gen_tokens, "s (median)": median(gen_s), "tokens/s": gen_tokens / median(gen_s)},
        {"phase": "training (update)", "tokens": gen_tokens, "s (median)": median(train_s), "tokens/s": gen_tokens / median(train_s)},
    ]
    name = torch.cuda.get_device_name() if device == "cuda" else "cpu"
    title = (f"device throughput: {path.name} ({params / 1e6:.0f}M params) on {name}, {dtype}, {args.prompts}x{args.n} samples, "
             f"{args.prompt_tokens} prompt + {args.max_new_tokens} new tokens, {threads} thread(s), load {load}")
    print_table(title, rows, ["phase", "tokens", "s (median)", "tokens/s"])
    if peak is not None:
        print(f"peak GPU memory allocated: {peak:.2f} GiB")
    out = {"benchmark": "device_throughput", "device": name, "dtype": dtype, "model": str(path), "params": params,
           "config": vars(args), "rows": rows, "peak_gpu_gib": peak, "generation_s": gen_s, "training_s": train_s,
           "machine": machine_info(load, threads=threads)}
    print(f"device_throughput: wrote {write_json(args.out, out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
