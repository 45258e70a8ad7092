"""Learner update modes (full, LoRA, sparse): what trains, optimizer state, sync parity and bytes."""
from __future__ import annotations

import pytest
import torch

from rlpost.config import Config, load_config
from rlpost.learner.learner import Learner
from rlpost.learner.modes import check_update_mode
from rlpost.learner.modes.masks import MaskError, SparseMask
from rlpost.rollout.hf_engine import HFEngine
from rlpost.rollout.worker import RolloutWorker
from rlpost.types import TrainBatch, TrainSample

pytest.importorskip("peft")


def config(*overrides: str) -> Config:
    return load_config(None, ["optim.lr=1e-2", *overrides])


def batch(engine, step: int) -> TrainBatch:
    """Two groups of two with opposite advantages; the tokens vary with `step` so updates differ."""
    g = torch.Generator().manual_seed(step)
    samples = []
    for prompt in ([5, 6, 84], [7, 8, 84]):
        for adv in (1.0, -1.0):
            toks = torch.randint(10, 20, (3,), generator=g).tolist() + [2]
            samples.append(TrainSample(prompt, toks, engine.logprobs([(prompt, toks)])[0], adv))
    return TrainBatch(samples)


def train_and_sync(cfg: Config, model_path: str, steps: int = 3):
    """Learner and HF rollout worker after `steps` update+sync rounds; returns both and sync records."""
    learner, worker = Learner(cfg, model_path), RolloutWorker(cfg, model_path)
    records = [worker.load_weights(learner.export_weights())]
    for step in range(steps):
        learner.update(batch(worker.engine, step))
        records.append(worker.load_weights(learner.export_weights()))
    return learner, worker, records


def parity(learner, worker) -> float:
    seqs = [([5, 6, 84], [11, 12, 2]), ([7, 8, 84], [13, 2]), ([9, 84], [14, 15, 16, 2])]
    a, b = learner.logprobs(seqs), worker.logprobs(seqs)
    return max(abs(x - y) for ra, rb in zip(a, b) for x, y in zip(ra, rb))


def initial_weights(model_path: str) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in HFEngine(model_path).model.named_parameters()}


@pytest.mark.parametrize(
    "overrides",
    [
        [],
        ["learner.update=lora", "learner.lora.sync=merge"],
        ["learner.update=lora", "learner.lora.sync=adapter"],
        ["learner.update=sparse"],
        ["learner.update=sparse", "learner.sparse.mask=grad_warmup", "learner.sparse.warmup_steps=1"],
    ],
    ids=["full", "lora-merge", "lora-adapter", "sparse-random", "sparse-grad-warmup"],
)
def test_rollout_matches_learner_after_every_kind_of_sync(tiny_model_path, overrides):
    learner, worker, records = train_and_sync(config(*overrides), tiny_model_path)
    assert [r["version"] for r in records] == [0, 1, 2, 3]
    assert parity(learner, worker) < 1e-5
    # and the weights did move, so parity is not trivially about the initial model
    ref = HFEngine(tiny_model_path)
    seqs = [([5, 6, 84], [11, 12, 2])]
    assert abs(sum(ref.logprobs(seqs)[0]) - sum(learner.logprobs(seqs)[0])) > 1e-4


def test_bytes_per_sync_lora_adapter_and_sparse_vs_full(tiny_model_path):
    full = train_and_sync(config(), tiny_model_path, steps=1)[2]
    lora = train_and_sync(config("learner.update=lora", "learner.lora.r=2"), tiny_model_path, steps=1)[2]
    sparse = train_and_sync(config("learner.update=sparse", "learner.sparse.density=0.2"), tiny_model_path, steps=1)[2]
    full_bytes = full[1]["bytes"]
    assert lora[0]["bytes"] > full_bytes  # the first sync carries the base as an anchor
    assert lora[1]["bytes"] <= 0.05 * full_bytes
    assert sparse[1]["bytes"] <= 0.25 * full_bytes


def test_sparse_keeps_unmasked_weights_bit_identical_and_state_proportional(tiny_model_path):
    before = initial_weights(tiny_model_path)
    states = {}
    for density in (0.2, 0.5):
        learner, _, _ = train_and_sync(config("learner.update=sparse", f"learner.sparse.density={density}"), tiny_model_path)
        mask = learner.mode.mask
        changed_masked = 0
        for name, p in learner.model.named_parameters():
            if name not in mask.indices:
                continue  # 1-D tensors train densely
            keep = torch.ones(p.numel(), dtype=torch.bool)
            keep[mask.indices[name].long()] = False
            assert torch.equal(p.detach().reshape(-1)[keep], before[name].reshape(-1)[keep]), name
            changed_masked += int((p.detach().reshape(-1)[~keep] != before[name].reshape(-1)[~keep]).sum())
        assert changed_masked > 0
        dense_numel = sum(p.numel() for n, p in learner.model.named_parameters() if n not in mask.indices)
        assert learner.optimizer.state_numel() == 2 * (mask.nnz() + dense_numel)
        states[density] = mask.nnz()
    assert states[0.5] / states[0.2] == pytest.approx(2.5, rel=0.01)


def test_lora_trains_only_adapters_and_uses_the_base_as_reference(tiny_model_path):
    cfg = config("learner.update=lora", "algo.kl_coef=0.1")
    learner, worker, _ = train_and_sync(cfg, tiny_model_path, steps=2)
    assert learner.ref_model is None  # no second model: adapters off is the reference
    before = initial_weights(tiny_model_path)
    base = dict(learner.mode.base_weights())
    assert all(torch.equal(base[n], before[n]) for n in before)
    m = learner.update(batch(worker.engine, 7))
    assert m["learner/kl"] > 0


@pytest.mark.parametrize("overrides", [["learner.update=lora"], ["learner.update=sparse"]], ids=["lora", "sparse"])
def test_checkpoint_round_trip_and_plain_model(tiny_model_path, tmp_path, overrides):
    cfg = config(*overrides)
    learner, worker, _ = train_and_sync(cfg, tiny_model_path, steps=2)
    learner.save(str(tmp_path / "ckpt"))
    again = Learner(cfg, tiny_model_path)
    again.load(str(tmp_path / "ckpt"))
    assert parity(again, worker) < 1e-6
    # after a resume the next export is self-contained again (fresh rollout workers)
    fresh = RolloutWorker(cfg, tiny_model_path)
    fresh.load_weights(again.export_weights())
    assert parity(again, fresh) < 1e-5
    # one more identical update from both gives identical weights (optimizer state restored)
    b = batch(worker.engine, 9)
    learner.update(b), again.update(b)
    assert parity(learner, again) < 1e-6
    learner.save_hf(str(tmp_path / "hf"))
    assert parity(learner, HFEngine(str(tmp_path / "hf"))) < 1e-5
    if "learner.update=sparse" in overrides:  # the mask is saved, reusable as learner.sparse.mask=file
        saved = SparseMask.load(tmp_path / "ckpt" / "mask.safetensors")
        assert saved.fingerprint() == learner.mode.mask.fingerprint()


def test_bad_update_mode_inputs_name_the_problem(tiny_model_path, tmp_path):
    with pytest.raises(ValueError, match="'nope_proj' matches no linear layer"):
        check_update_mode(config("learner.update=lora", "learner.lora.target_modules=[q_proj, nope_proj]"), tiny_model_path)
    with pytest.raises(ValueError, match="'lm_head' shares its weight"):
        check_update_mode(config("learner.update=lora", "learner.lora.target_modules=[lm_head]"), tiny_model_path)
    shapes = {n: tuple(p.shape) for n, p in HFEngine(tiny_model_path).model.named_parameters() if p.dim() >= 2}
    name = "model.layers.0.mlp.up_proj.weight"
    bad = dict(shapes)
    bad[name] = tuple(reversed(shapes[name]))
    SparseMask.random(bad, 0.2, seed=0).save(tmp_path / "mask.safetensors")
    with pytest.raises(MaskError, match=f"'{name}' has shape"):
        check_update_mode(
            config("learner.update=sparse", "learner.sparse.mask=file", f"learner.sparse.file={tmp_path / 'mask.safetensors'}"),
            tiny_model_path,
        )
    with pytest.raises(ValueError, match="optim.name=sgd"):
        check_update_mode(config("learner.update=sparse", "optim.name=sgd"), tiny_model_path)


def test_checkpoint_diff_mask_refuses_a_base_that_is_not_the_start(tiny_model_path, tiny_untied_model_path, tmp_path):
    learner, _, _ = train_and_sync(config(), tiny_model_path, steps=1)
    learner.save_hf(str(tmp_path / "tuned"))
    cfg = config("learner.update=sparse", "learner.sparse.mask=checkpoint_diff",
                 f"learner.sparse.diff_base={tiny_model_path}", f"learner.sparse.diff_tuned={tmp_path / 'tuned'}")
    sparse = Learner(cfg, tiny_model_path)
    # one full step moves (nearly) every entry; the mask is exactly the changed set
    assert sparse.mode.mask.density() > 0.5 and sparse.mode.mask.source.startswith("checkpoint_diff")
    with pytest.raises(MaskError, match="not this run's starting model"):
        Learner(cfg, str(tmp_path / "tuned"))


def test_bf16_compute_keeps_fp32_master_weights(tiny_model_path):
    """model.dtype=bfloat16: the forward runs in bf16, the weights (the master copy) stay fp32, so
    updates far below a bf16 ulp still accumulate (spec §1.1)."""
    cfg = config("model.dtype=bfloat16", "optim.lr=1e-6", "optim.grad_clip=1e9")
    learner = Learner(cfg, tiny_model_path)
    engine = HFEngine(tiny_model_path)
    before = {n: p.detach().clone() for n, p in learner.model.named_parameters()}
    for step in range(3):
        learner.update(batch(engine, step))
    moved = 0
    for n, p in learner.model.named_parameters():
        assert p.dtype == torch.float32, n
        delta = (p.detach() - before[n]).abs()
        # changes smaller than half a bf16 ulp of the weight: invisible in bf16, kept by the fp32 master
        ulp = torch.finfo(torch.bfloat16).eps * before[n].abs()
        moved += int(((delta > 0) & (delta < ulp / 2)).sum())
    assert moved > 0
    with torch.no_grad():
        seq = [(s.prompt_ids, s.token_ids) for s in batch(engine, 0).samples[:2]]
        lp16 = learner.logprobs(seq)
        learner.compute_dtype = torch.float32
        lp32 = learner.logprobs(seq)
    diff = max(abs(a - b) for x, y in zip(lp16, lp32) for a, b in zip(x, y))
    assert 0 < diff < 0.1  # the bf16 forward is really bf16, and close


def test_lora_layers_adapt_only_the_chosen_decoder_layers(tiny_model_path):
    from pydantic import ValidationError

    from rlpost.config import LoRAConfig

    base = Config().model_dump()
    base["learner"].update(update="lora", lora={"layers": [3]})
    learner = Learner(Config.model_validate(base), tiny_model_path)
    adapted = {name.split(".layers.")[1].split(".")[0] for name in learner.mode.layers}
    assert adapted == {"3"} and len(learner.mode.layers) > 1  # every linear of layer 3, none elsewhere
    with pytest.raises(ValidationError, match="learner.lora.layers needs target_modules as a list"):
        LoRAConfig(layers=[3], target_modules="q_proj")
