"""Checkpoints for exact resume, written atomically: a crash mid-write leaves the last good one.

Layout: <run>/checkpoints/step_000010/{learner/, rollout.pt, controller.pt}; a folder is written
as `.step_000010.tmp` and renamed only when complete, so any `step_*` folder is whole.
"""
from __future__ import annotations

import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch


def checkpoint_root(run_dir: Path) -> Path:
    return run_dir / "checkpoints"


def latest_checkpoint(run_dir: Path) -> Path | None:
    root = checkpoint_root(run_dir)
    if not root.is_dir():
        return None
    done = sorted(p for p in root.glob("step_*") if p.is_dir() and (p / "controller.pt").is_file())
    return done[-1] if done else None


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
