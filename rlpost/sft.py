"""Supervised fine-tuning: cross-entropy on completion tokens only; saves an HF folder that
transformers and vLLM load. Used for warm starts and by the reranker recipes."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import torch

from rlpost import console
from rlpost.config import Config
from rlpost.data import PromptDataset, render_template
from rlpost.data.recipe import encode_prompts, load_split
from rlpost.learner.optim import build_optimizer
from rlpost.models.forward import completion_logprobs
from rlpost.models.loading import load_model, load_tokenizer, resolve_model_path


def sft_fingerprint(cfg: Config) -> str:
    """Hash of everything that determines the SFT result (reuse a finished SFT run if equal)."""
    blob = json.dumps(
        {"model": cfg.model.model_dump(), "data": cfg.data.model_dump(), "sft": cfg.sft.model_dump(exclude={"output_dir", "log_every"}), "seed": cfg.run.seed,
         "tokenizer": 2},  # 2: the tiny models' tokenizer keeps whitespace; older SFT folders lost it
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def sft_output_dir(cfg: Config) -> Path:
    return Path(cfg.sft.output_dir) if cfg.sft.output_dir else cfg.output_dir / "sft"


def run_sft(cfg: Config) -> Path:
    """Train, save and return the SFT folder; reuses it when a finished run has the same fingerprint.
    Progress on the console: loss and lr, every sft.log_every steps when the output is not a terminal."""
    out = sft_output_dir(cfg)
    stamp = out / "rlpost_sft.json"
    fingerprint = sft_fingerprint(cfg)
    if stamp.is_file() and json.loads(stamp.read_text()).get("fingerprint") == fingerprint:
        console.echo(f"sft: reusing {out} (trained with the same settings)")
        return out

    torch.set_num_threads(cfg.run.threads)
    records = load_split(cfg, cfg.data.train_split, sft=True)
    base = resolve_model_path(cfg.model)
    tokenizer = load_tokenizer(base)
    model = load_model(base, "float32").train()
    _, prompt_ids = encode_prompts(cfg, records, tokenizer)
    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    target_ids = [
        tokenizer(render_template(cfg.sft.target_template, r), add_special_tokens=False).input_ids + eos
        for r in records
    ]

    sc = cfg.sft
    opt, sched = build_optimizer(
        model.parameters(), sc.lr, sc.steps, sc.warmup_steps, "cosine", sc.min_lr_ratio, sc.weight_decay
    )
    torch.manual_seed(cfg.run.seed)
    data = PromptDataset(records, seed=cfg.run.seed)
    with console.phase("sft", sc.steps, "steps", every=sc.log_every) as bar:
        for step in range(sc.steps):
            idx = [i for i, _ in data.next_batch(sc.batch_size)]
            logp, mask, _ = completion_logprobs(
                model, [prompt_ids[i] for i in idx], [target_ids[i] for i in idx], tokenizer.pad_token_id
            )
            loss = -(logp * mask).sum() / mask.sum().clamp(min=1)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), sc.grad_clip)
            opt.step()
            sched.step()
            bar.update(step + 1, f"loss {loss.item():.4g}  lr {sched.get_last_lr()[0]:.3g}")
    save_hf_folder(model, tokenizer, out)
    console.echo(f"sft: saved {out}")
    stamp.write_text(json.dumps({"fingerprint": fingerprint, "steps": sc.steps, "base": str(base)}))
    return out


def save_hf_folder(model, tokenizer, out: Path) -> None:
    """Write model + tokenizer to `out` atomically (a crash leaves the previous folder intact)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    if out.exists():
        old = out.with_name(f".{out.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(out, old)
        os.replace(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, out)
