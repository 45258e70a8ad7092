"""Update modes on one ~50M-parameter model: bytes per sync, sync time, learner peak memory, step time.

full (AdamW on every weight, dense sync), lora (r=8 on all linear layers, adapter-only sync; the
merge sync is measured too) and sparse (random mask at density 0.2, masked AdamW, values-only
sync) run the same GRPO learner on the same synthetic batch (random prompt/completion tokens,
advantages +-1: the learner's cost does not depend on what the tokens say). Each mode runs in a
fresh subprocess so its peak RSS is its own: the learner first (model, optimizer, --steps timed
updates, peak RSS read before any rollout engine exists), then a rollout worker with the HF engine
in the same process receives --syncs syncs (export on the learner side, apply on the rollout side,
bytes = what would cross Ray's object store). Run from the repository root:

    OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 python scripts/bench/update_modes.py
    python scripts/bench/update_modes.py --steps 2 --syncs 2 --size tiny     # quick check

Writes runs/bench/update_modes.json (--out) and prints a table.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(HERE))
from common import loadavg, machine_info, median, print_table, write_json  # noqa: E402

MODES = {
    "full": [],
    "lora": ["learner.update=lora", "learner.lora.r=8", "learner.lora.sync=adapter"],
    "lora-merge": ["learner.update=lora", "learner.lora.r=8", "learner.lora.sync=merge"],
    "sparse": ["learner.update=sparse", "learner.sparse.density=0.2"],
}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    p.add_argument("--size", default="medium", choices=["tiny", "medium"])
    p.add_argument("--prompts", type=int, default=8)
    p.add_argument("--n", type=int, default=4, help="completions per prompt")
    p.add_argument("--prompt-len", type=int, default=32)
    p.add_argument("--completion-len", type=int, default=64)
    p.add_argument("--steps", type=int, default=4, help="timed learner updates (after one warm-up)")
    p.add_argument("--syncs", type=int, default=4, help="timed syncs after the first (anchor) sync")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=str(REPO / "runs" / "bench" / "update_modes.json"))
    p.add_argument("--cell", help=argparse.SUPPRESS)  # internal: "mode:model_path:result_path"
    return p.parse_args(argv)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def current_rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def synthetic_batch(args, vocab: int, seed: int):
    import torch

    from rlpost.types import TrainBatch, TrainSample

    g = torch.Generator().manual_seed(seed)
    samples = []
    for i in range(args.prompts):
        prompt = torch.randint(4, vocab, (args.prompt_len,), generator=g).tolist()
        for j in range(args.n):
            toks = torch.randint(4, vocab, (args.completion_len,), generator=g).tolist()
            samples.append(TrainSample(prompt, toks, [0.0] * len(toks), 1.0 if j % 2 == 0 else -1.0))
    return TrainBatch(samples, temperature=1.0, max_new_tokens=args.completion_len)


def run_cell(args) -> None:
    mode, model_path, result_path = args.cell.split(":", 2)
    import torch

    torch.set_num_threads(args.threads)
    from rlpost.config import load_config
    from rlpost.learner.learner import Learner
    from rlpost.rollout.hf_engine import HFEngine
    from rlpost.rollout.worker import RolloutWorker

    cfg = load_config(None, ["optim.lr=1e-5", "train.micro_batch_size=16", f"run.threads={args.threads}", *MODES[mode]])
    rss_start = current_rss_mb()
    learner = Learner(cfg, model_path)
    rss_init = current_rss_mb()  # imports (peft for LoRA) and the model itself are counted here
    vocab = learner.model.get_input_embeddings().weight.shape[0]
    step_s = []
    for step in range(args.steps + 1):
        batch = synthetic_batch(args, vocab, step)
        t0 = time.perf_counter()
        learner.update(batch)
        if step:  # the first update pays one-off allocations
            step_s.append(time.perf_counter() - t0)
    peak_learner = peak_rss_mb()
    describe = learner.describe()
    state_floats = sum(
        t.numel() for s in learner.optimizer.state.values() for t in s.values() if torch.is_tensor(t) and t.dim() > 0
    )
    worker = RolloutWorker.around(HFEngine(model_path, threads=args.threads))
    syncs = []
    for k in range(args.syncs + 1):
        learner.update(synthetic_batch(args, vocab, 100 + k))
        t0 = time.perf_counter()
        payload = learner.export_weights()
        t_export = time.perf_counter() - t0
        applied = worker.load_weights(payload)
        syncs.append({"bytes": applied["bytes"], "export_s": t_export, "apply_s": applied["apply_s"]})
    seqs = [(s.prompt_ids, s.token_ids) for s in synthetic_batch(args, vocab, 999).samples[:4]]
    parity = max(abs(x - y) for a, b in zip(learner.logprobs(seqs), worker.logprobs(seqs)) for x, y in zip(a, b))
    later = syncs[1:]
    result = {
        "mode": mode, "params": describe["update/total_params"], "trainable": describe["update/trainable_params"],
        "optimizer_state_floats": state_floats,
        "bytes_first_sync": syncs[0]["bytes"], "bytes_per_sync": median(s["bytes"] for s in later),
        "export_s": median(s["export_s"] for s in later), "apply_s": median(s["apply_s"] for s in later),
        "sync_s": median(s["export_s"] + s["apply_s"] for s in later),
        "step_s": median(step_s), "step_s_all": step_s,
        "learner_peak_rss_mb": peak_learner, "rss_at_start_mb": rss_start,
        "learner_peak_over_start_mb": peak_learner - rss_start, "rss_after_init_mb": rss_init,
        "training_peak_mb": peak_learner - rss_init, "parity_max_diff": parity,
    }
    Path(result_path).write_text(json.dumps(result))


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.cell:
        run_cell(args)
        return
    load_before = loadavg()
    if args.size == "medium":
        from rollout_throughput import build_medium

        model = build_medium(REPO / "runs" / "bench" / "rollout_models" / "qwen2-medium-32k")
    else:
        from rlpost.config import TinyModelConfig
        from rlpost.models.tiny import build_tiny_model

        model = build_tiny_model(TinyModelConfig(), REPO / "runs" / "bench" / "rollout_models")
    rows = []
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "HF_HUB_OFFLINE": "1"}
    for mode in args.modes:
        result = Path(args.out).with_name(f".update_modes_{mode}.json")
        cmd = [sys.executable, __file__, "--cell", f"{mode}:{model}:{result}", *sys.argv[1:]]
        print(f"update_modes: {mode} (load {loadavg()})", flush=True)
        proc = subprocess.run(cmd, env=env, cwd=str(REPO), capture_output=True, text=True)
        if proc.returncode != 0:
            rows.append({"mode": mode, "error": (proc.stderr.strip().splitlines() or ["failed"])[-1]})
            continue
        rows.append(json.loads(result.read_text()))
        result.unlink()
    full = next((r for r in rows if r.get("mode") == "full" and "error" not in r), None)
    for r in rows:
        if full and "error" not in r:
            r["bytes_vs_full"] = r["bytes_per_sync"] / full["bytes_per_sync"]
            r["step_vs_full"] = r["step_s"] / full["step_s"]
            r["peak_vs_full"] = r["learner_peak_over_start_mb"] / full["learner_peak_over_start_mb"]
            r["training_peak_vs_full"] = r["training_peak_mb"] / full["training_peak_mb"]
    print_table(
        f"update modes, {args.size} model, {args.prompts}x{args.n} completions of {args.completion_len} tokens, {args.threads} thread(s)",
        [{**r, "MB/sync": r.get("bytes_per_sync", 0) / 1e6, "MB first": r.get("bytes_first_sync", 0) / 1e6} for r in rows],
        ["mode", "trainable", "optimizer_state_floats", "MB first", "MB/sync", "bytes_vs_full", "sync_s", "export_s", "apply_s",
         "learner_peak_over_start_mb", "peak_vs_full", "training_peak_mb", "training_peak_vs_full", "step_s", "step_vs_full", "parity_max_diff", "error"],
    )
    out = write_json(args.out, {"config": vars(args), "machine": machine_info(load_before, args.threads), "model": str(model), "results": rows})
    print(f"update_modes: wrote {out}")


if __name__ == "__main__":
    main()
