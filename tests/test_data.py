"""Tests for rlpost.data: loaders, tasks, prompts and the resumable prompt stream."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rlpost.data import (
    TASKS,
    DataError,
    PromptDataset,
    format_prompt,
    load_records,
    load_task,
    require_columns,
    shared_data_dir,
    template_columns,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
FIXTURE_DATA = Path(__file__).resolve().parent / "fixtures" / "data"
ROWS = [{"q": "1+1", "a": 2, "extra": "x"}, {"q": "2+3", "a": 5, "extra": "y"}]


def _real_data_dir() -> Path:
    try:
        return shared_data_dir()
    except DataError:
        pytest.skip("shared data directory not available")


@pytest.fixture
def fixture_shared(monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("RLPOST_SHARED_DATA", str(FIXTURE_DATA))
    return FIXTURE_DATA


# ---- loaders ----------------------------------------------------------------------------------


def test_load_jsonl(tmp_path: Path) -> None:
    p = tmp_path / "d.jsonl"
    p.write_text("\n".join(json.dumps(r) for r in ROWS) + "\n\n")
    assert load_records(str(p)) == ROWS


@pytest.mark.parametrize("wrap", [False, True])
def test_load_json(tmp_path: Path, wrap: bool) -> None:
    p = tmp_path / "d.json"
    p.write_text(json.dumps({"data": ROWS} if wrap else ROWS))
    assert load_records(str(p)) == ROWS


def test_load_parquet(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    p = tmp_path / "d.parquet"
    pq.write_table(pa.Table.from_pylist(ROWS), p)
    assert load_records(str(p)) == ROWS


def test_load_saved_dataset_and_dict(tmp_path: Path) -> None:
    import datasets

    datasets.Dataset.from_list(ROWS).save_to_disk(str(tmp_path / "ds"))
    assert load_records(str(tmp_path / "ds")) == ROWS

    dd = datasets.DatasetDict(
        {"train": datasets.Dataset.from_list(ROWS), "test": datasets.Dataset.from_list(ROWS[:1])}
    )
    dd.save_to_disk(str(tmp_path / "dd"))
    assert load_records(str(tmp_path / "dd"), split="test") == ROWS[:1]
    with pytest.raises(DataError, match="no split 'dev'.*test, train"):
        load_records(str(tmp_path / "dd"), split="dev")
    with pytest.raises(DataError, match="several splits"):
        load_records(str(tmp_path / "dd"))


def test_load_errors(tmp_path: Path) -> None:
    missing = tmp_path / "nope.jsonl"
    with pytest.raises(DataError, match=str(missing)):
        load_records(str(missing))
    bad_ext = tmp_path / "d.csv"
    bad_ext.write_text("a,b\n")
    with pytest.raises(DataError, match=r"unsupported.*'\.csv'"):
        load_records(str(bad_ext))
    bad_line = tmp_path / "bad.jsonl"
    bad_line.write_text('{"a": 1}\n{oops\n')
    with pytest.raises(DataError, match="line 2"):
        load_records(str(bad_line))
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(DataError, match="save_to_disk"):
        load_records(str(tmp_path / "empty_dir"))


def test_require_columns_message() -> None:
    require_columns(ROWS, ["q", "a"], "d.jsonl")
    with pytest.raises(DataError) as e:
        require_columns(ROWS, ["q", "prompt"], "d.jsonl")
    msg = str(e.value)
    assert "'prompt'" in msg and "d.jsonl" in msg and "q, a, extra" in msg and "\n" not in msg


# ---- tasks ------------------------------------------------------------------------------------


def test_registry_names_and_plugin() -> None:
    assert {"arithmetic", "gsm8k", "math500", "file"} <= set(TASKS.names())
    assert TASKS.get("rlpost.data.tasks:arithmetic") is TASKS.get("arithmetic")


def test_arithmetic_deterministic_disjoint_correct() -> None:
    kw = dict(digits=2, ops="+-*", seed=3, n_train=300, n_test=100)
    train = load_task("arithmetic", "train", **kw)
    test = load_task("arithmetic", "test", **kw)
    assert train == load_task("arithmetic", "train", **kw)
    assert train != load_task("arithmetic", "train", **{**kw, "seed": 4})
    assert len(train) == 300 and len(test) == 100
    assert not {r["question"] for r in train} & {r["question"] for r in test}
    assert len({r["question"] for r in train}) == 300
    compute = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b}
    for r in train + test:
        assert 10 <= r["a"] <= 99 and 10 <= r["b"] <= 99
        assert r["question"] == f"{r['a']}{r['op']}{r['b']}"
        assert r["answer"] == str(compute[r["op"]](r["a"], r["b"]))
    assert {r["op"] for r in train} == {"+", "-", "*"}
    # The test split does not move when the train size changes.
    assert load_task("arithmetic", "test", **{**kw, "n_train": 50}) == test
    assert load_task("arithmetic", "train", limit=7, **kw) == train[:7]


def test_arithmetic_same_across_processes() -> None:
    code = "from rlpost.data import load_task; print(load_task('arithmetic', 'train', limit=20))"
    outs = [
        subprocess.run(
            [sys.executable, "-c", code],
            cwd=REPO_ROOT,
            env={**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(REPO_ROOT)},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for seed in ("1", "2")
    ]
    assert outs[0] == outs[1] == repr(load_task("arithmetic", "train", limit=20)) + "\n"


def test_arithmetic_errors() -> None:
    with pytest.raises(DataError, match="distinct problems"):
        load_task("arithmetic", "train", digits=1)  # 100 problems < 2500
    with pytest.raises(DataError, match="ops"):
        load_task("arithmetic", "train", ops="/")
    with pytest.raises(DataError, match="no split 'validation'"):
        load_task("arithmetic", "validation")


def test_gsm8k_fixture(fixture_shared: Path) -> None:
    records = load_task("gsm8k", "train")
    assert records[0]["answer"] == "72"
    assert records[0]["solution"].endswith("#### 72")
    assert records[0]["question"].startswith("Natalia sold clips")
    assert records[-1]["answer"] == "1080"  # "#### 1,080"
    assert len(load_task("gsm8k", "test", limit=2)) == 2


def test_gsm8k_real_record() -> None:
    root = _real_data_dir()
    first = json.loads((root / "math/gsm8k/test.jsonl").open().readline())
    rec = load_task("gsm8k", "test", limit=1)[0]
    assert rec["question"] == first["question"]
    assert rec["answer"] == first["answer"].split("####")[-1].strip().replace(",", "")
    assert rec["answer"] == "18" and rec["solution"] == first["answer"]


def test_math500_real() -> None:
    _real_data_dir()
    records = load_task("math500", "test")
    assert len(records) == 500
    first = records[0]
    assert first["question"] == first["problem"] and first["question"].startswith("Convert the point $(0,3)$")
    assert first["answer"] == "\\left( 3, \\frac{\\pi}{2} \\right)"
    assert {"solution", "subject", "level", "unique_id"} <= set(first)


def test_missing_shared_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("RLPOST_SHARED_DATA", str(tmp_path / "absent"))
    with pytest.raises(DataError, match=str(tmp_path / "absent")):
        load_task("math500", "test")


def test_file_task(tmp_path: Path) -> None:
    p = tmp_path / "d.jsonl"
    p.write_text("\n".join(json.dumps(r) for r in ROWS))
    records = load_task("file", "train", path=str(p), question_column="q", answer_column="a")
    assert records[1] == {"q": "2+3", "a": 5, "extra": "y", "question": "2+3", "answer": "5"}
    with pytest.raises(DataError, match=f"{p.name}: missing column 'prompt'"):
        load_task("file", "train", path=str(p), question_column="prompt", answer_column="a")


# ---- prompts ----------------------------------------------------------------------------------


def _char_tokenizer(chat_template: str | None = None):
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    chars = sorted(set("abcdefghijklmnopqrstuvwxyz0123456789+-*=?: \n<>|/"))
    vocab = {"[UNK]": 0, **{c: i + 1 for i, c in enumerate(chars)}}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    hf = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]")
    if chat_template is not None:
        hf.chat_template = chat_template
    return hf


CHAT = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def test_format_string_prompt() -> None:
    tok = _char_tokenizer()
    rec = {"question": "12+34", "answer": "46"}
    assert format_prompt(rec, tok) == "12+34"
    assert format_prompt(rec, tok, template="{question}=") == "12+34="
    assert format_prompt(rec, tok, template="q: {question}", system_prompt="be brief") == "be brief\nq: 12+34"
    with pytest.raises(DataError, match="'problem'"):
        format_prompt(rec, tok, template="{problem}=")
    with pytest.raises(DataError, match="chat_template"):
        format_prompt(rec, tok, use_chat_template=True)
    assert tok("12+34=")["input_ids"] == [tok.convert_tokens_to_ids(c) for c in "12+34="]


def test_chat_template_prompt() -> None:
    tok = _char_tokenizer(CHAT)
    rec = {"question": "12+34", "answer": "46"}
    assert format_prompt(rec, tok) == "<|user|>12+34\n<|assistant|>"
    assert (
        format_prompt(rec, tok, template="{question}=", system_prompt="add")
        == "<|system|>add\n<|user|>12+34=\n<|assistant|>"
    )
    assert format_prompt(rec, tok, template="{question}=", use_chat_template=False) == "12+34="


def test_template_columns() -> None:
    assert template_columns("{question} [{meta.level}] {choices[0]}{{literal}}") == {"question", "meta", "choices"}
    with pytest.raises(DataError, match="positional"):
        template_columns("{} and {0}")


# ---- PromptDataset ----------------------------------------------------------------------------


def test_prompt_dataset_resume() -> None:
    records = [{"question": str(i), "answer": str(i)} for i in range(10)]
    ds = PromptDataset(records, seed=7)
    for _ in range(3):
        ds.next_batch(4)  # 12 prompts: crosses into epoch 1
    state = ds.state_dict()
    assert (state["epoch"], state["position"]) == (1, 2)
    expected = [ds.next_batch(4) for _ in range(4)]

    resumed = PromptDataset(records, seed=7)
    resumed.load_state_dict(json.loads(json.dumps(state)))
    assert [resumed.next_batch(4) for _ in range(4)] == expected
    assert all(records[i] is r for batch in expected for i, r in batch)


def test_prompt_dataset_epochs() -> None:
    records = [{"question": str(i)} for i in range(8)]
    ds = PromptDataset(records, seed=0)
    epoch0, epoch1 = [i for i, _ in ds.next_batch(8)], [i for i, _ in ds.next_batch(8)]
    assert sorted(epoch0) == sorted(epoch1) == list(range(8)) and epoch0 != epoch1
    assert [i for i, _ in PromptDataset(records, seed=0, shuffle=False).next_batch(10)] == [*range(8), 0, 1]
    with pytest.raises(DataError, match="seed"):
        PromptDataset(records, seed=1).load_state_dict(ds.state_dict())


def test_arithmetic_levels_more_terms_mixed_ops_and_sizes():
    from rlpost.data.tasks import arithmetic

    recs = arithmetic("test", n_test=300, terms=3, ops="+-*", digits=[1, 2])
    assert len({r["question"] for r in recs}) == 300
    assert all(eval(r["question"]) == int(r["answer"]) for r in recs)  # the usual precedence
    assert {len(r["operands"]) for r in recs} == {3} and {len(str(x)) for r in recs for x in r["operands"]} == {1, 2}
    assert any(r["answer"].startswith("-") for r in recs)
    assert arithmetic("test", n_test=5)[0] == {"question": "59+15", "answer": "74", "solution": "74", "operands": [59, 15], "ops": "+", "a": 59, "b": 15, "op": "+"}
    with pytest.raises(DataError, match="terms must be >= 2"):
        arithmetic("test", terms=1)
    with pytest.raises(DataError, match="digits must be an integer >= 1 or a list"):
        arithmetic("test", digits=[0, 2])


def test_arithmetic_difficulty_levels_are_a_column_and_evaluation_breaks_accuracy_down_by_it():
    from rlpost.data.tasks import arithmetic
    from rlpost.evaluate import breakdown

    levels = [{"name": "easy", "digits": 1, "terms": 3, "ops": "+-"}, {"digits": 2, "terms": 2, "ops": "*"}]
    test, train = arithmetic("test", n_test=400, levels=levels), arithmetic("train", n_test=400, n_train=600, levels=levels)
    names = {r["level"] for r in test}
    assert names == {"easy", "2x2d*"} and 120 < sum(r["level"] == "easy" for r in test) < 280  # drawn uniformly
    assert all(eval(r["question"]) == int(r["answer"]) for r in test + train)
    assert all(len(r["operands"]) == (3 if r["level"] == "easy" else 2) for r in test)
    assert not {r["question"] for r in test} & {r["question"] for r in train}
    assert arithmetic("test", n_test=400, levels=levels) == test  # seeded
    # the SFT rows of the level recipes come after the RL prompts in the same stream
    later = arithmetic("train", n_test=1000, n_train=100, levels=levels)
    assert not {r["question"] for r in later} & {r["question"] for r in test + train}
    with pytest.raises(DataError, match=r"levels\[1\] has unknown keys \['digit'\]"):
        arithmetic("test", levels=[{}, {"digit": 2}])
    with pytest.raises(DataError, match=r"levels\[0\] ops must be made of"):
        arithmetic("test", levels=[{"name": "x", "ops": "/"}])
    with pytest.raises(DataError, match="cannot draw 150 distinct problems from levels"):
        arithmetic("test", n_test=150, n_train=0, levels=[{"name": "a", "digits": 1}, {"name": "b", "digits": 1}])  # 100 shared problems
    with pytest.raises(DataError, match="level names must be distinct"):
        arithmetic("test", levels=[{"digits": 1}, {"digits": 1}])
    records = [{"level": "a"}, {"level": "b"}, {"level": "a"}]
    assert breakdown(records, "level", [True, False, False], [4, 2, 0], 4) == {
        "greedy_accuracy/level=a": 0.5, "sample_accuracy/level=a": 0.5, "greedy_accuracy/level=b": 0.0, "sample_accuracy/level=b": 0.5}


def test_target_task_has_many_solutions_per_prompt_and_disjoint_splits():
    from rlpost.data.tasks import expression_value, target

    train, test = target("train", n_train=3000), target("test", n_test=50)
    assert len(test) == 50 and len(train) == 3000
    assert not {r["question"] for r in train} & {r["question"] for r in test}
    assert all(expression_value(r["solution"]) == int(r["answer"]) for r in train)
    by_target: dict[str, set[str]] = {}
    for r in train:
        by_target.setdefault(r["question"], set()).add(r["solution"])
    assert sum(len(v) for v in by_target.values()) / len(by_target) > 5  # several distinct solutions per target
    assert expression_value("12+34-5*6") == 16
    with pytest.raises(ValueError):
        expression_value("12+")


def test_sft_task_kwargs_give_sft_other_rows_than_rl():
    from rlpost.config import load_config
    from rlpost.data.recipe import load_split

    levels = "[{digits: 1, terms: 3, ops: '+-'}, {digits: 2, terms: 2, ops: '+'}]"
    cfg = load_config("quickstart", [f"data.task_kwargs={{n_train: 512, n_test: 100, levels: {levels}}}",
                                     "sft.task_kwargs={n_test: 612, n_train: 2000}"])
    rl, sft = load_split(cfg, "train"), load_split(cfg, "train", sft=True)
    assert len(rl) == 512 and len(sft) == 2000
    assert not {r["question"] for r in rl} & {r["question"] for r in sft}
    assert not {r["question"] for r in load_split(cfg, "test")} & {r["question"] for r in sft}
