"""Devices and placement: where models go, colocated == separate, and the refusals before any model loads.

GPU-marked tests run only where CUDA is (scripts/gpu_check.sh runs them on a lent GPU machine)."""
from __future__ import annotations

import pytest
import torch
from test_controller import _weights, metrics, small_cfg

from rlpost.config import ConfigError
from rlpost.controller import train
from rlpost.models.device import actor_device

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def test_a_process_uses_cuda_only_when_given_a_gpu_it_can_see():
    assert actor_device("cpu", 1).type == "cpu"
    assert actor_device("auto", 0).type == "cpu"  # Ray gave it none: the CPU, even on a GPU machine
    assert actor_device("auto", 1).type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="model.device=cuda but this process sees no CUDA device"):
            actor_device("cuda", 1)


@pytest.mark.parametrize("extra", [[], ["learner.update=lora"], ["model.dtype=bfloat16", "train.parity_tolerance=0.5"]],
                         ids=["full-shared", "lora-shared", "bf16-copy"])
def test_colocated_placement_gives_the_same_update_as_separate(tmp_path, extra):
    """Same seed, 3 steps: bitwise the same weights; a shared fp32 engine syncs 0 bytes, a bf16 one copies in place."""
    if "learner.update=lora" in extra:
        pytest.importorskip("peft")
    weights, rows = {}, {}
    for placement in ("separate", "colocated"):
        run = tmp_path / placement
        train(small_cfg(run, "train.steps=3", "train.save_every=3", "train.parity_check_every=1",
                        f"cluster.placement={placement}", *extra))
        weights[placement], rows[placement] = _weights(run / "checkpoints" / "step_000003"), metrics(run)
    a, b = weights["separate"], weights["colocated"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # rollout-vs-learner logprob gaps may differ in the last bits (a separate LoRA engine runs merged weights)
    strip = lambda rs: [{k: v for k, v in r.items() if not k.startswith(("time/", "sync/", "learner/logprob_mismatch"))}  # noqa: E731
                        for r in rs]
    assert strip(rows["separate"]) == strip(rows["colocated"])
    shared = "model.dtype=bfloat16" not in extra
    assert all((r["sync/bytes"] == 0) == shared for r in rows["colocated"])
    if shared:  # the engine is the learner's module (decoding step by step still rounds differently: mismatch ~1e-6)
        assert all(r.get("sync/parity_max_diff", 0) == 0 for r in rows["colocated"])
    assert all(r["sync/bytes"] > 0 for r in rows["separate"])


@pytest.mark.slow
def test_colocated_actor_trains_on_ray(run_dir):
    try:
        train(small_cfg(run_dir, "cluster.mode=ray", "cluster.num_cpus=2", "train.steps=3", "train.parity_check_every=1",
                        "cluster.placement=colocated"))
    finally:
        import ray

        ray.shutdown()
    rows = metrics(run_dir)
    assert len(rows) == 3 and all(r["sync/bytes"] == 0 for r in rows) and rows[-1]["sync/parity_max_diff"] == 0


REFUSALS = [
    (["cluster.placement=colocated", "train.async_rollout=true"], "train.async_rollout=true generates while the learner trains"),
    (["cluster.placement=colocated", "cluster.learner_gpus=1", "cluster.rollout_gpus=2"], "must be 0 or the same"),
]
if not torch.cuda.is_available():
    REFUSALS += [
        (["cluster.learner_gpus=1"], r"asks for 1 GPU\(s\) \(cluster.learner_gpus=1\) but this machine has 0"),
        (["cluster.rollout_gpus=2", "cluster.learner_gpus=1"], r"asks for 3 GPU\(s\) \(cluster.learner_gpus=1, cluster.rollout_gpus=2\) but this machine has 0"),
        (["model.device=cuda"], "model.device=cuda but this machine has no CUDA device"),
    ]


@pytest.mark.parametrize("extra, message", REFUSALS)
def test_placement_and_gpu_requests_it_cannot_meet_fail_before_a_model_loads(run_dir, monkeypatch, extra, message):
    import rlpost.controller

    def no_model(*a, **k):
        raise AssertionError("a model was loaded before the refusal")

    monkeypatch.setattr(rlpost.controller, "resolve_model_path", no_model)
    monkeypatch.setattr(rlpost.controller, "run_sft", no_model)
    with pytest.raises(ConfigError, match=message):
        train(small_cfg(run_dir, "train.steps=1", *extra))


def test_colocated_vllm_needs_a_gpu(run_dir):
    pytest.importorskip("vllm")
    with pytest.raises(ConfigError, match="colocated with rollout.engine=vllm needs a GPU"):
        train(small_cfg(run_dir, "train.steps=1", "cluster.placement=colocated", "rollout.engine=vllm"))


@pytest.mark.slow
def test_more_gpus_than_the_ray_cluster_has_is_one_line(run_dir):
    try:
        with pytest.raises(ConfigError, match="but the local Ray cluster has 0"):
            train(small_cfg(run_dir, "train.steps=1", "cluster.mode=ray", "cluster.num_cpus=2", "cluster.learner_gpus=1"))
    finally:
        import ray

        ray.shutdown()


# ------------------------------------------------------------------ on a GPU (scripts/gpu_check.sh)

@cuda
@pytest.mark.gpu
@pytest.mark.parametrize("placement", ["separate", "colocated"])
@pytest.mark.parametrize("mode", ["full", "lora", "sparse"])
def test_gpu_learner_and_engine_train_on_cuda_with_parity(run_dir, placement, mode):
    if mode == "lora":
        pytest.importorskip("peft")
    # separate: half a GPU each, so the two fit the one GPU a lent machine has (local mode counts its GPUs)
    gpus = ["cluster.learner_gpus=0.5", "cluster.rollout_gpus=0.5"] if placement == "separate" else ["cluster.learner_gpus=1", "cluster.rollout_gpus=0"]
    train(small_cfg(run_dir, "train.steps=3", "train.parity_check_every=1", *gpus,
                    f"cluster.placement={placement}", f"learner.update={mode}"))
    rows = metrics(run_dir)
    assert rows[-1]["sync/parity_max_diff"] < 1e-3


@cuda
@pytest.mark.gpu
def test_gpu_models_go_to_the_device_they_were_given(tiny_model_path):
    from rlpost.learner.learner import Learner
    from rlpost.rollout.hf_engine import HFEngine
    from rlpost.types import Request, SamplingParams
    from test_learner import cfg_with

    learner = Learner(cfg_with(cluster__learner_gpus=1, model__dtype="bfloat16"), tiny_model_path)
    assert next(learner.model.parameters()).device.type == "cuda"
    assert next(learner.model.parameters()).dtype == torch.float32  # fp32 master weights, bf16 autocast
    engine = HFEngine(tiny_model_path, "bfloat16", device="cuda")
    out = engine.generate([Request([5, 6, 84], key=0)], SamplingParams(n=4, max_new_tokens=4))
    assert len(out) == 4 and all(len(c.token_ids) == len(c.logprobs) for c in out)


@cuda
@pytest.mark.gpu
@pytest.mark.vllm
def test_gpu_colocated_vllm_sleeps_while_the_learner_trains(run_dir):
    pytest.importorskip("vllm")
    train(small_cfg(run_dir, "train.steps=3", "train.parity_check_every=1", "cluster.learner_gpus=1",
                    "cluster.placement=colocated", "rollout.engine=vllm", "model.dtype=bfloat16",
                    "rollout.vllm_gpu_memory_utilization=0.3", "train.parity_tolerance=0.05"))
    rows = metrics(run_dir)
    assert len(rows) == 3 and rows[-1]["sync/parity_max_diff"] < 0.05
