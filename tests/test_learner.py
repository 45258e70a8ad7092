"""Learner: policy-gradient direction, NaN guard, fixed old logprobs, KL, export and checkpoint."""
from __future__ import annotations

import math

import pytest
import torch

from rlpost.config import Config
from rlpost.learner.learner import Learner
from rlpost.rollout.hf_engine import HFEngine
from rlpost.types import TrainBatch, TrainSample


def cfg_with(**sections) -> Config:
    base = Config().model_dump()
    for path, value in sections.items():
        sec, key = path.split("__")
        base[sec][key] = value
    return Config.model_validate(base)


def sample(prompt, tokens, adv, engine) -> TrainSample:
    lp = engine.logprobs([(prompt, tokens)])[0]
    return TrainSample(prompt, tokens, lp, adv)


@pytest.fixture(scope="module")
def engine(tiny_model_path):
    return HFEngine(tiny_model_path)


def seq_logprob(learner, prompt, tokens) -> float:
    return sum(learner.logprobs([(prompt, tokens)])[0])


def test_positive_advantage_raises_and_negative_lowers_logprob(tiny_model_path, engine):
    learner = Learner(cfg_with(optim__lr=1e-3), tiny_model_path)
    good, bad, prompt = [10, 11, 2], [12, 13, 2], [5, 6, 84]
    before = seq_logprob(learner, prompt, good), seq_logprob(learner, prompt, bad)
    for _ in range(3):
        metrics = learner.update(TrainBatch([sample(prompt, good, 1.0, engine), sample(prompt, bad, -1.0, engine)]))
    after = seq_logprob(learner, prompt, good), seq_logprob(learner, prompt, bad)
    assert after[0] > before[0] and after[1] < before[1]
    assert learner.version == 3
    assert metrics["train/tokens"] == 6 and metrics["learner/nan_skips"] == 0
    assert metrics["learner/logprob_mismatch"] > 0  # the engine's logprobs are from the initial weights


def test_nan_loss_skips_the_update_and_counts_it(tiny_model_path, engine):
    learner = Learner(Config(), tiny_model_path)
    before = {k: v.clone() for k, v in learner.model.state_dict().items()}
    metrics = learner.update(TrainBatch([sample([5, 6], [7, 2], float("nan"), engine)]))
    assert metrics["learner/nan_skips"] == 1
    assert all(torch.equal(before[k], v) for k, v in learner.model.state_dict().items())
    # and the learner keeps working afterwards
    metrics = learner.update(TrainBatch([sample([5, 6], [7, 2], 1.0, engine), sample([5, 6], [8, 2], -1.0, engine)]))
    assert metrics["learner/nan_skips"] == 1 and math.isfinite(metrics["learner/loss"])


def test_old_logprobs_are_fixed_across_passes(tiny_model_path, engine):
    learner = Learner(cfg_with(algo__epochs=3, optim__lr=5e-3), tiny_model_path)
    batch = TrainBatch([sample([5, 6], [7, 8, 2], 1.0, engine), sample([5, 6], [9, 9, 2], -1.0, engine)])
    metrics = learner.update(batch)
    # later passes see ratios away from 1 because old logprobs were computed once, before pass 1
    assert metrics["learner/ratio_max"] > 1.0 + 1e-4
    assert metrics["time/old_logprob"] > 0


def test_kl_to_reference_is_reported(tiny_model_path, engine):
    learner = Learner(cfg_with(algo__kl_coef=0.1, optim__lr=1e-2), tiny_model_path)
    batch = TrainBatch([sample([5, 6], [7, 8, 2], 1.0, engine), sample([5, 6], [9, 9, 2], -1.0, engine)])
    first = learner.update(batch)
    second = learner.update(batch)
    assert first["learner/kl"] == pytest.approx(0.0, abs=1e-6)
    assert second["learner/kl"] > 0


def test_export_dedups_tied_weights_and_round_trips(tiny_model_path, tiny_untied_model_path):
    tied = Learner(Config(), tiny_model_path).export_weights()
    names = [n for n, _, _ in tied.specs]
    assert "lm_head.weight" not in names and "model.embed_tokens.weight" in names
    untied = Learner(Config(), tiny_untied_model_path)
    payload = untied.export_weights()
    assert "lm_head.weight" in [n for n, _, _ in payload.specs]
    assert payload.nbytes == 4 * sum(p.numel() for p in untied.model.parameters())


def test_save_load_restores_weights_optimizer_and_version(tiny_model_path, engine, tmp_path):
    cfg = cfg_with(optim__lr=1e-3)
    a = Learner(cfg, tiny_model_path)
    batch = TrainBatch([sample([5, 6], [7, 8, 2], 1.0, engine), sample([5, 6], [9, 9, 2], -1.0, engine)])
    a.update(batch)
    a.save(str(tmp_path / "ckpt"))
    b = Learner(cfg, tiny_model_path)
    b.load(str(tmp_path / "ckpt"))
    assert b.version == a.version
    a.update(batch)
    b.update(batch)
    for (n, p), (_, q) in zip(a.model.named_parameters(), b.model.named_parameters()):
        assert torch.equal(p, q), n


def test_truncated_importance_sampling_weights():
    from rlpost.learner.learner import truncated_is_weights

    learner = torch.tensor([[-1.0, -2.0, -0.5]])
    rollout = torch.tensor([[-1.0, -1.0, -3.0]])
    w = truncated_is_weights(learner, rollout, cap=2.0)
    assert w.tolist()[0] == pytest.approx([1.0, math.exp(-1.0), 2.0])


def test_tis_is_applied_and_reported(tiny_model_path, engine):
    learner = Learner(cfg_with(algo__tis_cap=2.0), tiny_model_path)
    s = sample([5, 6], [7, 8, 2], 1.0, engine)
    s.rollout_logprobs = [x - 5.0 for x in s.rollout_logprobs]  # rollout thought these tokens were rarer
    m = learner.update(TrainBatch([s, sample([5, 6], [9, 9, 2], -1.0, engine)]))
    assert m["learner/tis_truncated_frac"] == pytest.approx(0.5)
    assert 1.0 < m["learner/tis_weight_mean"] <= 2.0


def _grouped_samples(engine) -> list[TrainSample]:
    groups = [([5, 6, 7], [[8, 9, 2], [10, 2], [11, 12, 13, 2]]), ([14, 15], [[16, 2], [17, 18, 2]]), ([19], [[20, 21, 2]])]
    advs = iter([1.0, -0.5, -0.5, 0.7, -0.7, 0.0])
    return [sample(p, c, next(advs), engine) for p, comps in groups for c in comps]


def _params(learner) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in learner.model.named_parameters()}


@pytest.mark.parametrize(
    "aggregation, kl", [("token-mean", 0.0), ("seq-mean-token-mean", 0.0), ("seq-mean-token-sum-norm", 0.1)]
)
def test_streamed_parts_give_the_whole_batch_update(tiny_model_path, engine, aggregation, kl):
    # SGD and no clipping: a wrong denominator would show in the weights and the gradient norm (AdamW hides scale)
    cfg = cfg_with(optim__name="sgd", optim__lr=0.5, optim__grad_clip=1e9, algo__aggregation=aggregation, algo__kl_coef=kl)
    samples = _grouped_samples(engine)
    batch = TrainBatch(samples, 1.0, 8)
    whole, streamed = Learner(cfg, tiny_model_path), Learner(cfg, tiny_model_path)
    m_whole = whole.update(batch)
    streamed.accumulate(TrainBatch(samples[:3], 1.0, 8))
    streamed.accumulate(TrainBatch(samples[3:], 1.0, 8))
    m_streamed = streamed.update(batch)
    for k, v in _params(whole).items():
        assert torch.allclose(v, _params(streamed)[k], atol=1e-6), k
    assert m_streamed["learner/grad_norm"] == pytest.approx(m_whole["learner/grad_norm"], rel=1e-5)
    assert m_streamed["learner/loss"] == pytest.approx(m_whole["learner/loss"], rel=1e-5, abs=1e-7)
    assert streamed.version == whole.version == 1
    start = _params(Learner(cfg, tiny_model_path))
    assert any(not torch.equal(v, start[k]) for k, v in _params(whole).items())  # the update did something


def test_parts_that_differ_from_the_batch_are_recomputed(tiny_model_path, engine, caplog):
    cfg = cfg_with(optim__name="sgd", optim__lr=0.5)
    samples = _grouped_samples(engine)
    whole, streamed = Learner(cfg, tiny_model_path), Learner(cfg, tiny_model_path)
    whole.update(TrainBatch(samples, 1.0, 8))
    # parts scored with other advantages (e.g. an advantage that normalises over the whole batch)
    streamed.accumulate(TrainBatch([TrainSample(s.prompt_ids, s.token_ids, s.rollout_logprobs, 2 * s.advantage) for s in samples], 1.0, 8))
    with caplog.at_level("WARNING", logger="rlpost.learner"):
        streamed.update(TrainBatch(samples, 1.0, 8))
    assert "recomputing the update on the whole batch" in caplog.text
    for k, v in _params(whole).items():
        assert torch.allclose(v, _params(streamed)[k], atol=1e-6), k


def test_a_nan_in_a_streamed_part_skips_the_update(tiny_model_path, engine):
    learner = Learner(cfg_with(optim__lr=1e-2), tiny_model_path)
    before = _params(learner)
    samples = _grouped_samples(engine)
    bad = [TrainSample(s.prompt_ids, s.token_ids, s.rollout_logprobs, math.nan) for s in samples[3:]]
    learner.accumulate(TrainBatch(samples[:3], 1.0, 8))
    learner.accumulate(TrainBatch(bad, 1.0, 8))
    m = learner.update(TrainBatch(samples[:3] + bad, 1.0, 8))
    assert learner.nan_skips == 1 and m["learner/nan_skips"] == 1.0
    for k, v in before.items():
        assert torch.equal(v, _params(learner)[k]), k


@pytest.mark.parametrize("aggregation", ["token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm"])
def test_zero_token_weights_add_nothing_and_do_not_count(tiny_model_path, engine, aggregation):
    """A row whose tokens all weigh 0 changes neither the gradient nor the denominators; a token
    weighted 0 inside a row drops out of that row's loss."""
    cfg = cfg_with(optim__name="sgd", optim__lr=0.1, optim__grad_clip=1e9, algo__aggregation=aggregation)
    a = sample([5, 6], [7, 8, 2], 1.0, engine)
    a.token_weights = [1.0, 0.0, 1.0]
    dead = sample([5, 6], [9, 9, 2], -1.0, engine)
    dead.token_weights = [0.0, 0.0, 0.0]
    with_dead, alone = Learner(cfg, tiny_model_path), Learner(cfg, tiny_model_path)
    m1 = with_dead.update(TrainBatch([a, dead], max_new_tokens=8))
    m2 = alone.update(TrainBatch([a], max_new_tokens=8))
    for (n, p), (_, q) in zip(with_dead.model.named_parameters(), alone.model.named_parameters()):
        torch.testing.assert_close(p, q, atol=1e-6, rtol=0, msg=n)  # two forward paths (shared prefix or not): float noise only
    assert m1["train/tokens"] == m2["train/tokens"] == 2 and m1["train/tokens_forward"] == 6


def test_micro_batches_cut_length_sorted_rows_only_when_the_batch_splits():
    from rlpost.learner.learner import micro_batches

    rows = [TrainSample([1], [2] * n, [0.0] * n, 0.0) for n in (1, 5, 2, 5, 3)]
    assert micro_batches([0, 1, 2, 3, 4], rows, 8) == [[0, 1, 2, 3, 4]]  # one forward: the batch's own order
    assert micro_batches([0, 1, 2, 3, 4], rows, 2) == [[1, 3], [4, 2], [0]]  # longest first, ties in order


@pytest.mark.parametrize("aggregation", ["token-mean", "seq-mean-token-mean"])
def test_length_sorted_micro_batches_give_the_whole_batch_update(tiny_model_path, engine, aggregation):
    """Micro-batches of 2 (length-sorted, less padding) == one forward over the batch, and logprobs come back in order."""
    prompt = [5, 6, 84]
    seqs = [[10, 2], [11, 12, 13, 14, 15, 2], [12, 2], [13, 14, 15, 16, 2], [16, 17, 2]]
    batch = TrainBatch([sample(prompt, s, a, engine) for s, a in zip(seqs, [1.0, -1.0, 0.5, 1.0, -0.5])])
    # SGD: the step is the gradient itself (Adam's first step is sign-like, blowing float noise up to lr)
    learners = [Learner(cfg_with(optim__name="sgd", optim__lr=1e-2, train__micro_batch_size=mb, algo__aggregation=aggregation),
                        tiny_model_path)
                for mb in (64, 2)]
    metrics = [lr.update(batch) for lr in learners]
    whole, split = ({k: v for k, v in lr.model.state_dict().items()} for lr in learners)
    assert all(torch.allclose(whole[k], split[k], atol=1e-6) for k in whole)
    assert metrics[1]["learner/padding_frac"] < metrics[0]["learner/padding_frac"]
    one = learners[0].logprobs([(prompt, s) for s in seqs])
    two = learners[1].logprobs([(prompt, s) for s in seqs])
    assert [len(x) for x in two] == [len(s) for s in seqs]
    assert all(abs(a - b) < 1e-5 for x, y in zip(one, two) for a, b in zip(x, y))
