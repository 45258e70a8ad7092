"""Samples that are choices in the prompt (GroupRank's score_at: block in RL): the engine draws one digit at each
block end from one forward, the learner recomputes the same logprobs, GRPO moves the distribution there, and
the reward reads the chosen scores."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from rlpost.cli import main
from rlpost.models.forward import read_logprobs
from rlpost.ranking.parsing import parse_block_scores
from rlpost.ranking.slots import digit_ids
from rlpost.rollout.hf_engine import HFEngine
from rlpost.types import Request, SamplingParams, TrainBatch, TrainSample
from rewards.ranking import grouprank_block
from tests.test_ranking_training import pools  # noqa: F401 (fixture)


@pytest.fixture(scope="module")
def engine(tiny_model_path):
    return HFEngine(tiny_model_path, seed=0, batch_size=2)


def read_requests(engine, texts: list[str], n: int) -> list[Request]:
    """One request per text, read at its 3rd, 6th and last token, choosing among the digits."""
    digits = digit_ids(engine.tokenizer)
    out = []
    for k, t in enumerate(texts):
        ids = engine.tokenizer(t, add_special_tokens=False).input_ids
        out.append(Request(prompt_ids=ids, n=n, key=k, reads=[2, 5, len(ids) - 1], choices=digits))
    return out


def test_read_logprobs_are_the_renormalised_digit_distribution_at_each_position(engine):
    """By hand: the full forward's logits at each read position, restricted to the choices, divided by the
    temperature, log-softmaxed; a prompt repeated in the batch (its n samples) runs once and reads the same."""
    req = read_requests(engine, ["q: fish d: tank", "hello world, goldfish"], n=1)
    digits = req[0].choices
    toks = [[digits[7], digits[0], digits[3]], [digits[1], digits[1], digits[9]]]
    prompts = [req[0].prompt_ids, req[1].prompt_ids, req[0].prompt_ids]
    with torch.no_grad():
        logp, mask, ent = read_logprobs(engine.model, prompts, [req[0].reads, req[1].reads, req[0].reads], toks + [toks[0]],
                                        [digits] * 3, engine.pad_id, temperature=0.7, with_entropy=True)
        for b, r in enumerate(req):
            full = engine.model(input_ids=torch.tensor([r.prompt_ids])).logits[0].float()
            want = torch.log_softmax(full[r.reads][:, digits] / 0.7, -1)
            picked = [want[j, digits.index(t)] for j, t in enumerate(toks[b])]
            np.testing.assert_allclose(logp[b].numpy(), torch.stack(picked).numpy(), atol=1e-5)
            np.testing.assert_allclose(ent[b].numpy(), (-(want.exp() * want).sum(-1)).numpy(), atol=1e-5)
    np.testing.assert_allclose(logp[2].numpy(), logp[0].numpy(), atol=1e-6)
    assert mask.tolist() == [[1.0] * 3] * 3


def test_the_engine_chooses_at_the_reads_and_its_logprobs_are_the_learners(engine):
    """n samples per request in request order, one digit per read, text the digits joined by spaces, and
    logprobs equal to the learner's recomputation (mixed prompt lengths, batches of 2); greedy is the argmax."""
    req = read_requests(engine, ["q: fish d: tank", "hello world, goldfish", "1+2=3, 4+4=8"], n=3)
    out = engine.generate(req, SamplingParams(n=3, temperature=1.0))
    assert [c.key for c in out] == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    digits = req[0].choices
    for c in out:
        assert len(c.token_ids) == 3 and set(c.token_ids) <= set(digits) and c.reads == req[c.key].reads
        assert c.text == " ".join(str(digits.index(t)) for t in c.token_ids) and c.finish_reason == "stop"
    with torch.no_grad():
        logp, _, _ = read_logprobs(engine.model, [c.prompt_ids for c in out], [c.reads for c in out], [c.token_ids for c in out],
                                   [c.choices for c in out], engine.pad_id)
    assert float((logp - torch.tensor([c.logprobs for c in out])).abs().max()) < 1e-5
    greedy = engine.generate(req[:1], SamplingParams(n=1, temperature=0))[0]
    with torch.no_grad():
        full = engine.model(input_ids=torch.tensor([req[0].prompt_ids])).logits[0, req[0].reads][:, digits]
    assert greedy.token_ids == [digits[i] for i in full.argmax(-1).tolist()]
    with pytest.raises(ValueError, match="mixes requests with reads"):
        engine.generate([req[0], Request(prompt_ids=req[0].prompt_ids)], SamplingParams())


@pytest.mark.parametrize("advantage", [1.0, 0.0])
def test_grpo_on_choices_moves_the_distribution_at_the_reads(tiny_model_path, advantage):
    """A sample choosing "7" at every read with a positive advantage and one choosing "0" with the opposite:
    a few updates raise P(7) and lower P(0) at those positions; with the advantages off nothing moves."""
    from rlpost.config import Config
    from rlpost.learner.learner import Learner

    base = Config().model_dump()
    base["optim"].update(lr=3e-3, warmup_steps=0)
    learner = Learner(Config.model_validate(base), tiny_model_path)
    digits = digit_ids(learner.tokenizer)
    prompt = learner.tokenizer("q: fish d: tank", add_special_tokens=False).input_ids
    reads = [4, 9, len(prompt) - 1]

    def probs() -> torch.Tensor:
        with torch.no_grad():
            logp, _, _ = read_logprobs(learner.model, [prompt, prompt], [reads, reads], [[digits[7]] * 3, [digits[0]] * 3],
                                       [digits, digits], learner.pad_id)
        return logp.exp().mean(-1)

    before = probs()
    for _ in range(5):
        old = read_logprobs(learner.model, [prompt, prompt], [reads, reads], [[digits[7]] * 3, [digits[0]] * 3], [digits, digits], learner.pad_id)[0]
        samples = [TrainSample(prompt, [digits[d]] * 3, old[i].tolist(), a, reads=reads, choices=digits)
                   for i, (d, a) in enumerate(((7, advantage), (0, -advantage)))]
        learner.update(TrainBatch(samples))
    after = probs()
    if advantage:
        assert after[0] > before[0] + 0.1 and after[1] < before[1]
    else:
        np.testing.assert_allclose(after.numpy(), before.numpy(), atol=1e-6)


def test_block_scores_parse_as_block_scoring_reads_them():
    """A "1" is 10 on the 0..10 scale (rank_loss.digit_values); a wrong count or a non-digit is malformed."""
    assert parse_block_scores("7 1 0", 3) == [7.0, 10.0, 0.0]
    assert parse_block_scores(" 3  9 ", 2) == [3.0, 9.0]
    for bad in ("7 1", "7 12 0", "7 a 0", ""):
        assert parse_block_scores(bad, 3) is None


def test_grouprank_block_reward_on_hand_computed_numbers():
    """gold (10, 0, 3), member 1 relevant. Chosen "1 0 3" = (10, 0, 3): the gold order, NDCG 1, Recall 1, JS 0:
    1 + 0.2 + 0.1 = 1.3. Chosen "0 1 3" = (0, 10, 3): order 2, 3, 1; linear gains, DCG = 0 + 3/log2(3) + 10/2
    against the ideal 10 + 3/log2(3): NDCG 0.5575; Recall 1 (k = 10 covers the group); P = (0, 10/13, 3/13) and
    Q = (10/13, 0, 3/13): JS = 10/13 bits, 0.1 (1 - 10/13) = 0.023077. Malformed: -0.5."""
    gold, rel = [10.0, 0.0, 3.0], [True, False, False]
    ndcg = (3 / np.log2(3) + 10 / 2) / (10 + 3 / np.log2(3))
    got = grouprank_block([""] * 3, ["1 0 3", "0 1 3", "1 0"], [{}] * 3, gold=[gold] * 3, relevant=[rel] * 3)
    np.testing.assert_allclose(got, [1.3, ndcg + 0.2 + 0.1 * 3 / 13, -0.5], atol=1e-6)
    assert grouprank_block.reads_choices is True


TINY_BLOCK = ["data.task_kwargs.score_at=block", "data.task_kwargs.layout=query-around", "rewards=[{name: grouprank_block}]"]


def test_the_tiny_grouprank_recipe_runs_rl_on_block_scores(tmp_path, pools):  # noqa: F811
    """SFT then GRPO with the samples chosen at the block ends: every step's samples are 3 digits (one per member),
    the reward is known, the logprobs the engine drew with match the learner's, and the model reranks at block ends."""
    run = tmp_path / "run"
    args = ["train", "recipes/grouprank/tiny.yaml", f"run.output_dir={run}", "log.tensorboard=false", *TINY_BLOCK,
            f"data.task_kwargs.train={json.dumps(pools)}", f"data.task_kwargs.test={json.dumps(pools)}"]
    assert main(args) == 0
    steps = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    steps = [s for s in steps if "reward/grouprank_block" in s]
    assert len(steps) == 2 and all(np.isfinite(s["reward/grouprank_block"]) for s in steps)
    assert all(s["train/response_length"] == 3 and s["learner/logprob_mismatch_max"] < 1e-4 for s in steps)
    out = tmp_path / "blocks.trec"
    assert main(["rerank", "--model", str(run / "final"), "--method", "grouprank", "--candidates", pools["candidates"],
                 "--qrels", pools["qrels"], "--top", "3", "--group-size", "3", "--out", str(out)]) == 0
    assert len(out.read_text().splitlines()) == 12


@pytest.mark.parametrize("overrides, expected", [
    (["data.task_kwargs.score_at=block"], ["rewards: these records are scored in the prompt", "none of grouprank reads those: use grouprank_block"]),
    (["rewards=[{name: grouprank_block}]"], ["rewards 'grouprank_block' reads scores chosen in the prompt", "set data.task_kwargs.score_at=block"]),
    (TINY_BLOCK + ["rollout.engine=vllm"], ["rollout.engine=vllm: these records are scored in the prompt", "only the hf engine draws: set rollout.engine=hf"]),
])
def test_block_rl_it_cannot_run_stops_in_one_line_before_any_model_loads(tmp_path, capsys, pools, overrides, expected):  # noqa: F811
    args = ["train", "recipes/grouprank/tiny.yaml", f"run.output_dir={tmp_path / 'run'}", *overrides,
            f"data.task_kwargs.train={json.dumps(pools)}", f"data.task_kwargs.test={json.dumps(pools)}"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and all(e in err for e in expected), err
    assert not (tmp_path / "run" / "sft").exists()
