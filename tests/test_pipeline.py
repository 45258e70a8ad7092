"""The algorithm pipeline: building and checking stages from a recipe, running them in order, and
what reaches the learner (prepared old logprobs, token weights)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from rlpost.algos.advantages import grpo
from rlpost.algos.aggregation import aggregation_kwargs
from rlpost.algos.stage import StageContext
from rlpost.config import AlgoConfig, ConfigError, load_config
from rlpost.pipeline import Pipeline
from tests.batches import make_batch, with_old_logprobs

REPO = Path(__file__).resolve().parent.parent
STAGES_FILE = REPO / "tests" / "fixtures" / "plugin_stages.py"


def run(algo: AlgoConfig, batch, step=0, total=10):
    return Pipeline.from_config(algo)(batch, StageContext(step, total))


def test_default_pipeline_is_grpo_with_the_degenerate_filter():
    batch = run(AlgoConfig(), make_batch([[1, 0, 0, 1], [1, 1, 1, 1], [0.5, 0.2, 0.9, 0.1]]))
    assert batch.keep.tolist() == [True] * 4 + [False] * 4 + [True] * 4
    expected = grpo(batch.raw_rewards, batch.group_ids)
    torch.testing.assert_close(batch.advantages, expected)
    assert batch.token_weights is None and batch.old_logprobs is None  # nothing asked for a learner pass
    samples = batch.train_batch().samples
    assert len(samples) == 8 and all(s.old_logprobs is None and s.token_weights is None for s in samples)


def test_stages_compose_in_order_with_a_plugin_from_a_file():
    algo = AlgoConfig(
        advantage={"name": "dr_grpo"}, post=[{"name": "clip", "fn": f"{STAGES_FILE}:clip_advantages", "kwargs": {"limit": 0.25}}],
        select=["keep_all"],
    )
    batch = run(algo, make_batch([[1, 0, 0, 0]]))
    assert batch.advantages.tolist() == [0.25, -0.25, -0.25, -0.25]  # dr_grpo gives 0.75 / -0.25, then clipped
    assert batch.metrics["plugin/clipped"] == 1.0


def test_token_weights_set_the_loss_denominators():
    batch = make_batch([[1, 0, 1]], [[4, 3, 2]])
    batch.advantages = torch.tensor([1.5, -1.5, 0.5])
    algo = AlgoConfig(select=[], tokens=[{"name": "d3s_tokens", "kwargs": {"k_init": 1 / 3, "k_final": 1 / 3}}])
    stages = Pipeline.from_config(algo).stages[-1:]
    with_old_logprobs(batch, [[0.0] * 4, [0.0] * 3, [0.0] * 2], [[0.1, 0.8, 0.05, 0.4], [0.3, 0.02, 0.9], [1.1, 0.1]])
    Pipeline(stages)(batch, StageContext(0, 10))
    weights = [s.token_weights for s in batch.train_batch().samples]
    assert weights == [[0, 1, 0, 1], [0, 0, 1], [0, 0]]
    assert aggregation_kwargs("token-mean", weights, 8) == {"norm": 3.0}  # kept tokens, not all 9
    assert aggregation_kwargs("seq-mean-token-mean", weights, 8) == {"norm": 2.0}  # a row with no kept token does not count
    assert aggregation_kwargs("seq-mean-token-sum-norm", weights, 8) == {"norm": 2.0, "max_len": 8}


def test_prepared_rows_reach_the_learner_with_their_old_logprobs():
    batch = with_old_logprobs(make_batch([[1, 0]], [[2, 3]]), [[-0.1, -0.2], [-0.3, -0.4, -0.5]])
    samples = batch.train_batch().samples
    assert [s.old_logprobs for s in samples] == [pytest.approx([-0.1, -0.2]), pytest.approx([-0.3, -0.4, -0.5])]


@pytest.mark.parametrize(
    "overrides, expected",
    [
        (["algo.shape=[{name: unlikelyness}]"], "algo.shape[0]: unknown pipeline stage 'unlikelyness' (known: adv_clip, cohort_grpo, d3s_samples, d3s_tokens, degenerate_filter"),
        (["algo.shape=[{name: unlikeliness, kwargs: {betta: 0.5}}]"], "algo.shape[0] 'unlikeliness' does not take kwarg betta (it takes: beta, length_norm, ties, objectives)"),
        (["algo.shape=[{name: unlikeliness, kwargs: {beta: 2}}]"], "algo.shape[0] 'unlikeliness': beta must be in [0, 1], got 2"),
        (["algo.shape=[{name: d3s_tokens}]"], "algo.shape[0] 'd3s_tokens' is a tokens stage (last: per-token weights, after advantages and selection), it cannot run at algo.shape"),
        (["algo.tokens=[{name: grpo}]"], "algo.tokens[0] 'grpo' is a advantage stage"),
        (["algo.advantage=d3s_samples"], "algo.advantage 'd3s_samples' is a select stage"),
        (["algo.select=[{name: d3s_samples, kwargs: {mode: crosss}}]"], "algo.select[0] 'd3s_samples': mode must be 'intra' or 'cross', got 'crosss'"),
        ([f"algo.post=[{{name: mine, fn: '{STAGES_FILE}:nope'}}]"], "algo.post[0] 'mine': cannot resolve"),
        (["algo.selector=keep_all"], "'algo.selector' is no longer a key: use algo.select"),
        (["algo.shape=[{name: unlikeliness, kwargs: {objectives: [correctnes]}}]"], "algo.shape[0] 'unlikeliness': objectives ['correctnes'] are not rewards of this run"),
        (["algo.shape=[{name: unlikeliness, kwargs: {objectives: correctness}}]"], "objectives must be a non-empty list of reward names"),
        (["algo.advantage={name: grpo, kwargs: {eps: tiny}}"], "algo.advantage 'grpo': kwarg eps must be a number, got 'tiny'"),
        ([f"sampler.name={STAGES_FILE}:OldSampler"], "defines observe(), which is now finish(items, members)"),
        (["algo.adv_eps=1e-4"], "'algo.adv_eps' is no longer a key: use the advantage stage's kwargs"),
        (["train.stream_parts=2", "algo.shape=[unlikeliness]"], "train.stream_parts=2 cannot be used here: algo.shape[0] 'unlikeliness' needs old_logprobs"),
        (["train.stream_parts=2", "algo.tokens=[d3s_tokens]"], "algo.tokens[0] 'd3s_tokens' looks across the batch"),
        (["train.stream_parts=2", "algo.select=[{name: d3s_samples, kwargs: {mode: cross}}]"], "algo.select[0] 'd3s_samples' looks across the batch"),
        ([f"algo.post=[{{name: mine, fn: '{STAGES_FILE}:undeclared'}}]", "train.stream_parts=2"], "algo.post[0] 'mine' looks across the batch"),
        ([f"sampler.name={REPO}/tests/fixtures/plugin_run.py:RetryDegenerate",
          f"rewards=[{{name: rank, fn: '{STAGES_FILE}:group_reward'}}]"], "reward 'rank' looks across a group and sampler"),
    ],
)
def test_bad_pipelines_fail_in_one_line_before_any_model_loads(overrides, expected, capsys, monkeypatch, tmp_path):
    from rlpost.cli import main

    monkeypatch.chdir(REPO)
    # model.source=hf with a path that does not exist: reaching the model would fail differently
    assert main(["train", "quickstart", f"run.output_dir={tmp_path}", "model.source=hf", "model.path=/no/model", *overrides]) == 2
    err = capsys.readouterr().err
    lines = [l for l in err.splitlines() if l.startswith("rlpost: error:")]
    assert len(lines) == 1, err
    assert expected in lines[0], lines[0]
    assert "Traceback" not in err


def test_a_bare_stage_name_is_a_spec_and_its_kwargs_can_be_overridden():
    cfg = load_config("quickstart", ["algo.advantage=rloo", "algo.advantage.kwargs.eps=0.5", "algo.select=[keep_all]"])
    assert cfg.algo.advantage.name == "rloo" and cfg.algo.advantage.kwargs == {"eps": 0.5}
    assert [s.name for s in cfg.algo.select] == ["keep_all"]


def test_unlikeliness_without_the_filter_warns(caplog):
    Pipeline.from_config(AlgoConfig(shape=["unlikeliness"], select=[]))
    assert "meant to run with degenerate_filter" in caplog.text


def test_a_flat_group_filter_beside_a_cohort_advantage_is_a_warning(caplog):
    """degenerate_filter (the default select) drops a document whose rollouts tied, which cohort_grpo trains."""
    Pipeline.from_config(AlgoConfig(advantage={"name": "cohort_grpo"}))
    assert "algo.select[0] 'degenerate_filter' drops a prompt's completions whose rewards are all equal" in caplog.text
    caplog.clear()
    Pipeline.from_config(AlgoConfig(advantage={"name": "cohort_grpo"}, select=[{"name": "keep_all"}]))
    Pipeline.from_config(AlgoConfig())
    assert "drops a prompt's completions" not in caplog.text


def test_a_stage_needing_old_logprobs_gets_them_once_from_the_learner(tiny_model_path):
    """Through a real learner: prepare runs once, for the kept rows, and the update reuses its result."""
    from rlpost.actors import LocalHandle
    from rlpost.config import Config
    from rlpost.learner.learner import Learner

    learner = Learner(Config(), tiny_model_path)
    calls = []
    real = learner.prepare
    learner.prepare = lambda b, entropy=False: calls.append((len(b.samples), entropy)) or real(b, entropy)
    algo = AlgoConfig(shape=["unlikeliness"], select=["degenerate_filter", {"name": f"{STAGES_FILE}:keep_likely"}],
                      tokens=["d3s_tokens"])
    batch = make_batch([[1, 0, 1, 1], [1, 1, 1, 1]], [[2, 3, 1, 2], [1, 1, 2, 2]])
    Pipeline.from_config(algo)(batch, StageContext(0, 10, LocalHandle(learner)))
    assert calls == [(8, True)]  # one pass, entropy included because d3s_tokens needs it later
    assert batch.metrics["time/prepare"] > 0
    direct = learner.logprobs([(s.completion.prompt_ids, s.completion.token_ids) for s in batch.rows])
    for i, row in enumerate(direct):
        assert batch.old_logprobs[i, : len(row)].tolist() == pytest.approx(row, abs=1e-6)
    assert batch.entropy is not None and float(batch.entropy[0, 0]) > 0
    tb = batch.train_batch()
    assert len(tb.samples) == 4 and all(s.old_logprobs is not None for s in tb.samples)
    metrics = learner.update(tb)
    assert metrics["time/old_logprob"] < 0.05 and metrics["learner/ratio_mean"] == pytest.approx(1.0, abs=1e-5)


def test_yaml_strings_become_numbers_where_a_stage_wants_them():
    # PyYAML reads 1e-6 (no dot) as a string
    cfg = load_config("quickstart", ["algo.advantage={name: grpo, kwargs: {eps: 1e-6}}"])
    assert cfg.algo.advantage.kwargs == {"eps": "1e-6"}
    batch = Pipeline.from_config(cfg.algo)(make_batch([[1, 0]]), StageContext(0, 10))
    assert batch.advantages.tolist() == pytest.approx([0.7071, -0.7071], abs=1e-4)


def test_a_step_whose_groups_are_all_filtered_out_passes_through_every_stage():
    algo = AlgoConfig(select=["degenerate_filter", "d3s_samples"], tokens=["d3s_tokens"])  # no row left for prepare
    batch = Pipeline.from_config(algo)(make_batch([[1, 1, 1], [0, 0, 0]]), StageContext(0, 10, learner=None))
    assert not batch.keep.any() and batch.train_batch().samples == []


def test_unlikeliness_leaves_penalties_alone():
    from rlpost.types import Batch, Completion, Group, PromptItem, Scored, pool_stats

    item = PromptItem(0, 0, {}, [1, 2], "p")
    members = [Scored(Completion(0, [1, 2], [3 + i], "x", [-0.5], "stop", 0), 1.0 - 0.5, {"c": 1.0, "len": 0.5}, True)
               for i in range(3)]
    batch = Batch.from_groups({0: Group(item, members, pool_stats(members))}, {"c": 1.0, "len": -1.0}, 1.0, 4)
    with_old_logprobs(batch, [[-0.1], [-0.5], [-0.9]])
    Pipeline.from_config(AlgoConfig(shape=["unlikeliness"]))(batch, StageContext(0, 10))
    assert batch.shaped[:, 1].tolist() == [0.5, 0.5, 0.5]  # the negative-weight column is untouched
    assert batch.shaped[:, 0].tolist() == pytest.approx([1 - 0.25 * 2 / 3, 1 - 0.25 / 3, 1.0])
