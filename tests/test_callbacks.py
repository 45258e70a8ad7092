"""The callback seam and NExt in the RL loop: LoRA rebase, write-back sync, resume after a jump,
plug-ins by path, and bad input refused before any model loads."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from rlpost.callbacks import build_callbacks
from rlpost.config import ConfigError, load_config
from rlpost.controller import train
from test_controller import SMALL, _weights, metrics

REPO = Path(__file__).resolve().parent.parent
PLUGIN = REPO / "tests" / "fixtures" / "plugin_callbacks.py"
NEXT = "{name: next, kwargs: {interval: 2, observe: 6, horizon: 2, coef: [0.5, 2.0], select_prompts: 8, epochs: 50, lr: 1.0e-3, width: 16}}"


def cfg_for(run_dir: Path, *extra: str):
    return load_config("quickstart", SMALL + [f"run.output_dir={run_dir}", *extra])


def strip(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if not k.startswith("time/") and not k.endswith("/seconds")} for r in rows]


def test_lora_write_back_rebases_and_keeps_the_reference(tiny_model_path, tmp_path):
    """Spec N-9: after a write the B factors are zero, the effective weight is the written one, the
    KL reference is still W_0, and a save/load round trip restores the moved base."""
    pytest.importorskip("peft")
    from rlpost.learner.modes import build_update_mode
    from rlpost.models.loading import load_model

    cfg = load_config("quickstart", ["learner.update=lora"])
    mode = build_update_mode(cfg, load_model(tiny_model_path, "float32"))
    name = next(iter(mode.layers))
    w0 = mode.layers[name].base_layer.weight.detach().clone()
    with torch.no_grad():
        for layer in mode.layers.values():
            layer.lora_B["default"].weight.normal_()
    merged = mode.read("merged")
    assert not torch.equal(merged[name], w0)
    lora = mode.read("lora")[name]
    assert torch.allclose(w0 + lora[2] * lora[1] @ lora[0], merged[name], atol=1e-6)
    new = merged[name] + 0.01
    reset = mode.write({name: new})
    assert len(reset) == 2 and torch.count_nonzero(mode.layers[name].lora_B["default"].weight) == 0
    assert torch.equal(mode.read("merged")[name], new)
    with mode.reference():
        assert torch.equal(mode.layers[name].base_layer.weight, w0)
    assert torch.equal(mode.layers[name].base_layer.weight, new)
    mode.save_model(tmp_path / "m")
    again = build_update_mode(cfg, load_model(tiny_model_path, "float32"))
    again.load_model(tmp_path / "m")
    assert torch.equal(again.read("merged")[name], new)
    with again.reference():
        assert torch.equal(again.layers[name].base_layer.weight, w0)
    with pytest.raises(ValueError, match="only adapted layers"):
        mode.write({"model.embed_tokens.weight": torch.zeros(1)})


def test_next_jumps_syncs_with_parity_and_resume_after_the_jump_is_exact(run_dir):
    """The jump writes a non-zero update, the write-back sync passes the parity check, and a run
    resumed from the checkpoint written right after the jump ends with the uninterrupted run's weights."""
    pytest.importorskip("peft")
    cfg = cfg_for(run_dir, "train.steps=8", "train.save_every=6", "learner.update=lora", "optim.lr=1e-2",
                  "algo.kl_coef=0.01", f"callbacks=[{NEXT}]")
    train(cfg)
    rows = metrics(run_dir)
    jump = rows[5]
    assert jump["next/matrices"] > 0 and jump["next/update_norm"] > 0 and jump["next/update_ratio"] > 0
    assert jump["next/parity_max_diff"] <= cfg.train.parity_tolerance
    assert {"next/accuracy_before", "next/accuracy_after", "next/predictor_loss"} <= jump.keys()
    assert jump["next/coef"] in (0.5, 2.0) and {"next/select_accuracy/coef=0.5", "next/select_accuracy/coef=2"} <= jump.keys()
    assert all(not any(k.startswith("next/") for k in r) for i, r in enumerate(rows) if i != 5)
    assert (run_dir / "eval_step6_before_jump.json").is_file() and (run_dir / "eval_step6_after_jump.json").is_file()
    assert "model.layers.0.self_attn.q_proj.weight" in _weights(run_dir / "checkpoints" / "step_000006")  # the moved base
    straight, straight_rows = _weights(run_dir / "checkpoints" / "step_000008"), metrics(run_dir)
    shutil.rmtree(run_dir / "checkpoints" / "step_000008")
    train(cfg)  # resumes right after the jump
    resumed = _weights(run_dir / "checkpoints" / "step_000008")
    assert straight.keys() == resumed.keys()
    for k in straight:
        assert torch.equal(straight[k], resumed[k]), k
    assert strip(metrics(run_dir)) == strip(straight_rows)


def test_linear_extrapolation_on_a_full_update_run(run_dir):
    """capture=merged works for full updates: dense snapshots, the same jump and sync."""
    train(cfg_for(run_dir, "train.steps=6", "learner.update=full", "optim.lr=1e-3",
                  "callbacks=[{name: linear_extrapolation, kwargs: {interval: 2, observe: 6, horizon: 2, eval_jump: false}}]"))
    jump = metrics(run_dir)[5]
    assert jump["linear/matrices"] > 0 and jump["linear/update_norm"] > 0
    assert jump["linear/parity_max_diff"] <= 1e-3


def test_callbacks_from_a_file_plug_in_by_path_and_their_state_survives_resume(run_dir):
    cbs = f"callbacks=[{{name: counter, fn: '{PLUGIN}:StepCounter', kwargs: {{start: 10}}}}, {{name: odd, fn: '{PLUGIN}:every_other', kwargs: {{tag: odd}}}}]"
    cfg = cfg_for(run_dir, "train.steps=4", "train.save_every=2", cbs)
    train(cfg)
    rows = metrics(run_dir)
    assert [r["plugin/seen"] for r in rows] == [11, 12, 13, 14] and [r["plugin/odd"] for r in rows] == [0, 1, 0, 1]
    shutil.rmtree(run_dir / "checkpoints" / "step_000004")
    train(cfg)  # the counter resumes at 12, not at its start value
    assert [r["plugin/seen"] for r in metrics(run_dir)] == [11, 12, 13, 14]
    state = torch.load(run_dir / "checkpoints" / "step_000004" / "controller.pt", weights_only=False)["callbacks"]
    assert [s["name"] for s in state] == ["counter", "odd", "evaluation", "checkpoints"] and state[0]["state"] == {"seen": 14}


@pytest.mark.parametrize("extra, message", [
    (["train.steps=5", "callbacks=[{name: next, kwargs: {interval: 10}}]"], "interval=10 is longer than the run (train.steps=5)"),
    (["train.steps=100", "callbacks=[next]"], "observe=150 is past the run's end (train.steps=100)"),
    (["train.steps=200", "learner.update=lora", "learner.lora.r=4", "callbacks=[{name: next, kwargs: {rank: 8}}]"],
     "rank=8 is larger than the adapter's rank (learner.lora.r=4)"),
    (["train.steps=200", "learner.update=sparse", "callbacks=[next]"], "cannot serve learner.update=sparse"),
    (["train.steps=200", "callbacks=[{name: next, kwargs: {observe: 60}}]"], "fewer than two training pairs"),
    (["train.steps=200", "callbacks=[{name: next, kwargs: {capture: lora}}]"], "capture=lora needs learner.update=lora"),
    (["callbacks=[{name: next, kwargs: {speed: 2}}]"], "unexpected keyword argument 'speed'"),
    (["callbacks=[{name: next, kwargs: {coef: fast}}]"], "kwarg coef must be a number"),
    (["callbacks=[nexxt]"], "unknown callback 'nexxt'"),
    ([f"callbacks=[{{name: f, fn: '{PLUGIN}:every_other', kwargs: {{colour: 1}}}}]"], "unexpected keyword argument 'colour'"),
])
def test_bad_callback_input_is_one_line_before_any_model_loads(extra, message):
    cfg = load_config("quickstart", extra)
    with pytest.raises(ConfigError) as e:
        build_callbacks(cfg)
    assert message in str(e.value) and "\n" not in str(e.value)
    assert str(e.value).startswith("callbacks[0]")
