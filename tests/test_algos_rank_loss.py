"""SFT's ranking term on hand-computed numbers: expected scores over digit tokens, RankNet over a group's
ordered pairs, the pair count that normalises it, micro-batches that keep a ranking group whole, and the
pointwise term at the same slots."""
from __future__ import annotations

import math
from functools import partial

import pytest
import torch

from rlpost.algos.rank_loss import digit_cross_entropy, digit_values, expected_scores, pairwise_logistic
from rlpost.learner.learner import rank_pairs, sft_micro_batches
from rlpost.types import SFTExample


def test_digit_values_read_a_leading_one_as_ten_on_a_0_to_10_scale():
    assert digit_values(10) == [0.0, 10.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]
    assert digit_values(3)[:4] == [0.0, 1.0, 2.0, 3.0]


def test_expected_scores_renormalise_over_the_digit_tokens():
    digits = list(range(2, 12))  # digit d is token d + 2; tokens 0 and 1 are not digits
    logits = torch.full((2, 12), -math.inf)
    logits[0, 2:] = 0.0  # uniform over the digits: (0 + 10 + 2 + ... + 9) / 10
    logits[0, 0] = 5.0  # a non-digit's mass is left out
    logits[1, 2 + 7], logits[1, 2 + 0] = math.log(3.0), 0.0  # P(7) = 0.75, P(0) = 0.25
    got = expected_scores(logits, digits, digit_values(10))
    assert torch.allclose(got, torch.tensor([5.4, 5.25]))


def test_digit_cross_entropy_takes_the_digit_nearest_each_gain():
    digits = list(range(2, 12))  # digit d is token d + 2
    logits = torch.zeros((4, 12))
    logits[:, 0] = 9.0  # a non-digit's mass is left out: uniform over the digits, -log(1/10) each
    logits[1, 2 + 7] = math.log(3.0)  # P(7) = 3/12
    gains = torch.tensor([10.0, 7.0, 1.0, 6.6])  # digits "1" (reads 10), 7, 0 (tie with 2: the lower), 7
    got = digit_cross_entropy(logits, digits, digit_values(10), gains)
    want = 3 * math.log(10) + math.log(12 / 3)  # the third row is uniform too, the fourth as well
    assert got.item() == pytest.approx(want, abs=1e-5)
    logits[2, 2 + 0] = 5.0  # gain 1.0 is read as digit 0: P(0) = e^5 / (e^5 + 9)
    want = 2 * math.log(10) + math.log(12 / 3) + math.log1p(9 * math.exp(-5))
    assert digit_cross_entropy(logits, digits, digit_values(10), gains).item() == pytest.approx(want, abs=1e-5)


def test_point_weight_needs_the_ranking_term_slots():
    from rlpost.config import Config

    base = Config().model_dump()
    base["sft"].update(point_weight=1.0)
    with pytest.raises(ValueError, match="point_weight=1.0 reads the ranking term's score slots: it needs rank_weight > 0"):
        Config.model_validate(base)


def test_pairwise_logistic_sums_ranknet_over_ordered_pairs_of_one_group():
    scores, gains = torch.tensor([2.0, 1.0, 3.0]), torch.tensor([2.0, 0.0, 1.0])
    total, pairs = pairwise_logistic(scores, gains, torch.tensor([0, 0, 0]))
    # (0 over 1): margin 1, (0 over 2): margin -1, (2 over 1): margin 2
    expected = math.log1p(math.exp(-1)) + math.log1p(math.exp(1)) + math.log1p(math.exp(-2))
    assert pairs == 3 and total.item() == pytest.approx(expected, abs=1e-6)
    total, pairs = pairwise_logistic(scores, gains, torch.tensor([0, 0, 1]))  # the third is another group's
    assert pairs == 1 and total.item() == pytest.approx(math.log1p(math.exp(-1)), abs=1e-6)
    total, pairs = pairwise_logistic(scores * 2, gains, torch.tensor([0, 0, 1]), sigma=2.0)  # sigma scales the margin
    assert total.item() == pytest.approx(math.log1p(math.exp(-1)), abs=1e-6)


def test_pairwise_logistic_is_shift_invariant_and_zero_without_pairs():
    scores, gains, groups = torch.tensor([1.0, 4.0]), torch.tensor([1.0, 0.0]), torch.tensor([0, 0])
    assert pairwise_logistic(scores, gains, groups)[0] == pytest.approx(pairwise_logistic(scores + 5, gains, groups)[0])
    s = torch.tensor([1.0, 2.0], requires_grad=True)
    total, pairs = pairwise_logistic(s, torch.tensor([3.0, 3.0]), groups)  # equal gains: no pair
    total.backward()
    assert pairs == 0 and total.item() == 0.0 and s.grad.abs().sum() == 0


def test_rank_pairs_and_micro_batches_keep_each_group_whole():
    ex = lambda group, *gains: SFTExample([1], [2], slots=[0] * len(gains), gains=list(gains), group=group)  # noqa: E731
    examples = [ex(0, 3.0), ex(1, 0.0, 7.0, 3.0), ex(0, 0.0), ex(0, 1.0), ex(2, 5.0)]
    assert rank_pairs(examples) == 3 + 3 + 0  # group 0: 3 > 1 > 0; group 1: 7 > 3 > 0; group 2: one slot
    chunks = sft_micro_batches(examples, 3)
    assert sorted(i for c in chunks for i in c) == list(range(5))
    assert [0, 2, 3] in chunks and all(len({examples[i].group for i in c}) == 1 or len(c) <= 3 for c in chunks)
    plain = [SFTExample([1] * n, [2]) for n in (1, 3, 2)]
    assert sft_micro_batches(plain, 2) == [[1, 2], [0]]  # no groups: by length, as the RL update cuts them


def sft_learner(model_path: str, lr: float, **sft):
    """A learner for SFT steps at learning rate ``lr`` with the ``sft`` settings given."""
    from rlpost.config import Config
    from rlpost.learner.learner import Learner

    base = Config().model_dump()
    base["sft"].update(sft)
    base["optim"].update(lr=lr, warmup_steps=0)
    return Learner(Config.model_validate(base), model_path)


def block_prompt(tok, text: str, members: tuple[str, ...]) -> tuple[list[int], list[int]]:
    """``text``'s token ids and the position of each member's last token (where score_at: block reads)."""
    ends = [len(tok(text[: text.index(m) + len(m)], add_special_tokens=False).input_ids) - 1 for m in members]
    return tok(text, add_special_tokens=False).input_ids, ends


@pytest.mark.parametrize("rank_weight", [1.0, 0.0])
def test_the_ranking_term_orders_what_a_constant_target_cannot(tiny_model_path, rank_weight):
    """Every target answers "0", so cross-entropy alone carries no order; only the ranking term can put the
    graded document's expected score above the other one's (and it does, on the tiny model, in 30 steps)."""
    from rlpost.config import Config
    from rlpost.learner.learner import Learner
    from rlpost.ranking.slots import digit_ids, score_slots

    base = Config().model_dump()
    base["sft"].update(rank_weight=rank_weight)
    base["optim"].update(lr=3e-3, warmup_steps=0)
    learner = Learner(Config.model_validate(base), tiny_model_path)
    tok = learner.tokenizer
    ids, slots = score_slots("<answer>0</answer>", tok, expected=1)
    prompts = [tok(f"q: fish d: {d}", add_special_tokens=False).input_ids for d in ("fish tank", "stock fell")]
    batch = [SFTExample(p, ids, slots, [g], 0) for p, g in zip(prompts, (3.0, 0.0))]

    def scores() -> list[float]:
        from rlpost.models.forward import completion_logits

        with torch.no_grad():
            logits, _, _ = completion_logits(learner.model, prompts, [ids, ids], learner.pad_id)
        return expected_scores(logits[:, slots[0]], digit_ids(tok), digit_values(10)).tolist()

    for _ in range(30):
        m = learner.sft_step(batch)
    good, bad = scores()
    if rank_weight:
        assert m["rank_pairs"] == 1 and good > bad + 0.5
    else:
        assert "rank" not in m and abs(good - bad) < 0.5


def test_the_ranking_term_reads_the_scores_in_rank_ids_when_given(tiny_model_path):
    """GroupRank's SFT examples carry rank_ids, the zero-filled answer direct scoring reads: the ranking term
    is RankNet on the expected scores at the slots of that completion (one forward shares the prompt), not
    on the gold answer's, where each score follows the gold scores before it."""
    from rlpost.config import Config
    from rlpost.learner.learner import Learner
    from rlpost.models.forward import completion_logits
    from rlpost.ranking.slots import digit_ids, score_slots

    base = Config().model_dump()
    base["sft"].update(rank_weight=1.0)
    base["optim"].update(lr=0.0, warmup_steps=0)
    learner = Learner(Config.model_validate(base), tiny_model_path)
    tok = learner.tokenizer
    gold, gold_slots = score_slots("<answer>7 0</answer>", tok, expected=2)
    zero, zero_slots = score_slots("<answer>0 0</answer>", tok, expected=2)
    prompt = tok("q: fish d1: fish tank d2: stock fell", add_special_tokens=False).input_ids

    def ranknet(ids: list[int], slots: list[int]) -> float:
        with torch.no_grad():
            logits, _, _ = completion_logits(learner.model, [prompt], [ids], learner.pad_id)
        s = expected_scores(logits[0, slots], digit_ids(tok), digit_values(10))
        return pairwise_logistic(s, torch.tensor([2.0, 0.0]), torch.tensor([0, 0]))[0].item()

    read_zero = learner.sft_step([SFTExample(prompt, gold, zero_slots, [2.0, 0.0], 0, rank_ids=zero)])
    read_gold = learner.sft_step([SFTExample(prompt, gold, gold_slots, [2.0, 0.0], 0)])
    assert read_zero["rank"] == pytest.approx(ranknet(zero, zero_slots), abs=1e-4)
    assert read_gold["rank"] == pytest.approx(ranknet(gold, gold_slots), abs=1e-4)
    assert abs(read_zero["rank"] - read_gold["rank"]) > 1e-3  # the two contexts give the second slot different scores
    assert read_zero["ce"] == pytest.approx(read_gold["ce"], abs=1e-5)  # cross-entropy is on the gold answer either way


@pytest.mark.parametrize("rank_weight", [1.0, 0.0])
def test_the_ranking_term_reads_slots_in_the_prompt(tiny_model_path, rank_weight):
    """GroupRank with score_at: block reads member k's score at its block's last prompt token (slots <= 0,
    counted from the target's first token): the term is RankNet on the expected scores there under a plain
    forward, cross-entropy is the target's as without slots, and only the term puts the graded block's score
    above the other's (on the tiny model, in 30 steps)."""
    from rlpost.ranking.slots import digit_ids

    learner_at = partial(sft_learner, tiny_model_path, rank_weight=rank_weight)
    learner = learner_at(0.0)
    tok = learner.tokenizer
    prompt, ends = block_prompt(tok, "q: fish [1] fish tank [2] stock fell answer:", ("fish tank", "stock fell"))
    target = tok("<answer>0 0</answer>", add_special_tokens=False).input_ids
    example = SFTExample(prompt, target, [q + 1 - len(prompt) for q in ends], [3.0, 0.0], 0)

    def scores(model) -> torch.Tensor:
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([prompt])).logits[0, ends].float()
        return expected_scores(logits, digit_ids(tok), digit_values(10))

    m = learner.sft_step([example])
    assert m["ce"] == pytest.approx(learner.sft_step([SFTExample(prompt, target)])["ce"], abs=1e-5)
    if rank_weight:
        want = pairwise_logistic(scores(learner.model), torch.tensor([3.0, 0.0]), torch.tensor([0, 0]))[0].item()
        assert m["rank_pairs"] == 1 and m["rank"] == pytest.approx(want, abs=1e-4)
    learner = learner_at(3e-3)
    for _ in range(30):
        learner.sft_step([example])
    good, bad = scores(learner.model).tolist()
    assert (good > bad + 0.5) if rank_weight else good < bad + 0.5  # measured: 8.8 vs 0.0 with the term, 1.0 vs 1.5 without


@pytest.mark.parametrize("point_weight", [1.0, 0.0])
def test_the_pointwise_term_trains_a_slot_no_pair_reaches(tiny_model_path, point_weight):
    """One block-scored member alone has no pair, so RankNet cannot move it; the pointwise term is the mean
    cross-entropy of its gold digit under the digit distribution at its block end (checked against a plain
    forward) and moves that distribution to the gold score (7) on the tiny model in 30 steps."""
    from rlpost.ranking.slots import digit_ids

    learner_at = partial(sft_learner, tiny_model_path, rank_weight=1.0, point_weight=point_weight)
    learner = learner_at(0.0)
    tok = learner.tokenizer
    prompt, (end,) = block_prompt(tok, "q: fish [1] fish tank answer:", ("fish tank",))
    target = tok("<answer>0</answer>", add_special_tokens=False).input_ids
    example = SFTExample(prompt, target, [end + 1 - len(prompt)], [7.0], 0)

    def p_seven(model) -> float:
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([prompt])).logits[0, end].float()
        return torch.softmax(logits[digit_ids(tok)], dim=-1)[7].item()

    m = learner.sft_step([example])
    assert m["rank_pairs"] == 0 and m["rank"] == 0.0
    if point_weight:
        assert m["point"] == pytest.approx(-math.log(p_seven(learner.model)), abs=1e-4)
        assert m["loss"] == pytest.approx(m["ce"] + m["point"], abs=1e-5)
    else:
        assert "point" not in m
    before = p_seven(learner.model)
    learner = learner_at(3e-3)
    for _ in range(30):
        learner.sft_step([example])
    after = p_seven(learner.model)
    # measured: P(7) 0.095 -> 0.9997 with the term; 0.095 -> 0.017 without (the target's "0" pulls every digit read)
    assert (after > 0.5) if point_weight else after < before
