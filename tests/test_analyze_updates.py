"""`rlpost analyze-updates`: per-tensor update sparsity (with tolerance) and update rank."""
from __future__ import annotations

import json
import shutil

import torch
from safetensors.torch import load_file, save_file

from rlpost.cli import main

NAME = "model.layers.0.mlp.up_proj.weight"


def test_sparsity_and_rank_of_a_known_update(tiny_model_path, tmp_path, capsys):
    tuned = tmp_path / "tuned"
    shutil.copytree(tiny_model_path, tuned)
    weights = load_file(tuned / "model.safetensors")
    w = weights[NAME]
    u, v = torch.zeros(w.shape[0]), torch.zeros(w.shape[1])
    u[[1, 7]] = 1.0
    v[[0, 3, 5]] = 0.5
    weights[NAME] = w + torch.outer(u, v)  # 6 entries change, rank 1
    weights["model.norm.weight"] = weights["model.norm.weight"] + 1e-6  # below the tolerance below
    save_file(weights, tuned / "model.safetensors")

    out = tmp_path / "report.json"
    assert main(["analyze-updates", tiny_model_path, str(tuned), "--tol", "1e-5", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    rows = {r["name"]: r for r in report["tensors"]}
    assert rows[NAME]["changed"] == 6 and rows[NAME]["rank"] == 1 and rows[NAME]["max_rank"] == min(w.shape)
    assert rows[NAME]["sparsity"] == 1 - 6 / w.numel()
    assert rows["model.norm.weight"]["changed"] == 0
    assert report["total"]["changed"] == 6
    # bitwise (tol 0) counts the tiny norm change too
    assert main(["analyze-updates", tiny_model_path, str(tuned), "--json", str(out)]) == 0
    assert json.loads(out.read_text())["total"]["changed"] == 6 + 128
    assert "update rank" in capsys.readouterr().out


def test_missing_or_adapter_only_inputs_exit_2(tiny_model_path, tmp_path, capsys):
    assert main(["analyze-updates", tiny_model_path, str(tmp_path / "nope")]) == 2
    assert "no such model or checkpoint" in capsys.readouterr().err
    (tmp_path / "adapter").mkdir()
    (tmp_path / "adapter" / "adapter_model.safetensors").write_bytes(b"")
    assert main(["analyze-updates", tiny_model_path, str(tmp_path / "adapter")]) == 2
    assert "LoRA adapter only" in capsys.readouterr().err
