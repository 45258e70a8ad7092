"""Checkpoints for exact resume, written atomically: a crash mid-write leaves the last good one.

Layout: <run>/checkpoints/step_000010/{learner/, rollout.pt, controller.pt}; a folder is written
as `.step_000010.tmp` and renamed only when complete, so any `step_*` folder is whole.
"""
from __future__ import annotations

import os
import random
import shutil
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rlpost.config import ConfigError

# Torch files a resume reads; the small ones also get their CRCs checked (the learner state is large).
_TORCH_FILES = {"controller.pt": True, "rollout.pt": True, "learner/learner_state.pt": False}


def checkpoint_root(run_dir: Path) -> Path:
    return run_dir / "checkpoints"


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The run's last complete checkpoint, checked readable (a ConfigError naming it when not), or None."""
    root = checkpoint_root(run_dir)
    if not root.is_dir():
        return None
    done = sorted(p for p in root.glob("step_*") if p.is_dir() and (p / "controller.pt").is_file())
    if not done:
        return None
    problem = checkpoint_problem(done[-1])
    if problem:
        raise ConfigError(
            f"checkpoint {done[-1]} is damaged ({problem}): pass --no-resume to start the run over, "
            "or delete that folder to resume from an earlier checkpoint"
        )
    return done[-1]


def checkpoint_problem(ckpt: Path) -> str | None:
    """What makes ``ckpt`` unreadable for a resume (a missing, truncated or foreign file), without
    loading it: torch files are zip archives, safetensors files start with a header of their tensors."""
    from safetensors import SafetensorError, safe_open

    for rel, check_crc in _TORCH_FILES.items():
        path = ckpt / rel
        if not path.is_file():
            return f"{rel} is missing"
        try:
            with zipfile.ZipFile(path) as z:
                bad = z.testzip() if check_crc else None
        except (zipfile.BadZipFile, OSError, EOFError):
            return f"{rel} is not a torch checkpoint file"
        if bad:
            return f"{rel} has a corrupt entry {bad}"
    weights = sorted((ckpt / "learner").rglob("*.safetensors"))
    if not any(w.parent == ckpt / "learner" / "model" for w in weights):
        return "learner/model holds no weights"
    for path in weights:
        try:
            with safe_open(str(path), framework="pt"):
                pass
        except (SafetensorError, OSError) as e:
            return f"{path.relative_to(ckpt)} is not a readable safetensors file: {' '.join(str(e).split())}"
    return None


def save_checkpoint(run_dir: Path, step: int, learner, rollout, controller_state: dict[str, Any], keep: int) -> Path:
    root = checkpoint_root(run_dir)
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step_{step:06d}"
    tmp = root / f".step_{step:06d}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    learner.call("save", str(tmp / "learner"))
    torch.save(rollout.call("state_dict"), tmp / "rollout.pt")
    state = dict(controller_state, rng=capture_rng())
    torch.save(state, tmp / "controller.pt")
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    for old in sorted(p for p in root.glob("step_*") if p.is_dir())[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def load_controller_state(ckpt: Path) -> dict[str, Any]:
    state = torch.load(ckpt / "controller.pt", weights_only=False)
    restore_rng(state.pop("rng"))
    return state


def capture_rng() -> dict[str, Any]:
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}


def restore_rng(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
