"""The console: progress a person can follow on a terminal and in a log file, results as tables, and a
quickstart-like run whose piped output holds no warning and no traceback."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import warnings
from io import StringIO
from pathlib import Path

import pytest
from rich.console import Console

from rlpost import console
from rlpost.types import Request, SamplingParams

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def shown():
    console.show_progress(True)
    yield
    console.show_progress(True)


def test_piped_phase_prints_a_start_line_one_line_per_interval_and_an_end_line(capsys):
    with console.phase("train", 5, "steps", every=2) as bar:
        for step in range(5):
            bar.update(step + 1, f"reward {step / 10:.3g}")
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "train: 5 steps ..."
    assert re.fullmatch(r"train 2/5 steps \(40%\)  0:00, ~0:00 left  reward 0.1", lines[1])
    assert lines[2].startswith("train 4/5 steps (80%)  0:00")
    assert re.fullmatch(r"train: 5/5 steps \(100%\) in 0:00  reward 0.4", lines[3])
    assert len(lines) == 4


def test_a_resumed_phase_counts_from_where_it_was(capsys):
    with console.phase("train", 10, "steps", every=5, done=8) as bar:
        bar.update(9), bar.update(10)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "train: 10 steps from 8 ..." and lines[-1].startswith("train: 10/10 steps (100%) in")


def test_a_phase_that_fails_says_where_it_stopped(capsys):
    with pytest.raises(RuntimeError), console.phase("sft", 10, "steps", every=100) as bar:
        bar.update(3)
        raise RuntimeError("boom")
    assert capsys.readouterr().out.splitlines()[-1].startswith("sft: stopped at 3/10 steps (30%) after 0:00")


def test_a_phase_without_a_total_says_how_long_it_took(capsys):
    with console.phase("start the actors", None):
        pass
    assert capsys.readouterr().out.splitlines() == ["start the actors ...", "start the actors: done in 0:00"]


def test_without_an_interval_lines_come_at_most_every_line_seconds(capsys, monkeypatch):
    now = [0.0]
    monkeypatch.setattr(console.time, "monotonic", lambda: now[0])
    with console.phase("eval", 4, "completions") as bar:
        bar.update(1)  # 0 s since the start: no line
        now[0] = 31.0
        bar.update(2)  # 31 s: a line
        now[0] = 40.0
        bar.update(3)  # 9 s since the last line: none
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[1] for line in lines[1:-1]] == ["2/4"]


def test_progress_off_hides_phases_but_not_tables(capsys):
    console.show_progress(False)
    with console.phase("train", 2, "steps", every=1) as bar:
        bar.update(1), bar.update(2)
    console.table("results", {"after": {"greedy_accuracy": 0.5}})
    out = capsys.readouterr().out
    assert "train" not in out and "greedy_accuracy" in out and "0.5000" in out


def test_table_has_a_column_per_label_and_a_row_per_scalar(capsys):
    console.table("held-out evaluation after step 100", {
        "before": {"n_prompts": 500, "greedy_accuracy": 0.18, "pass_curve": {"k": [1]}, "model": "m", "x": float("nan")},
        "after": {"n_prompts": 500, "greedy_accuracy": 0.548, "reward/len": 3.5},
    })
    out = capsys.readouterr().out
    assert "held-out evaluation after step 100" in out.splitlines()[0]  # the title is never wrapped
    rows = {line.split("│")[1].strip(): [c.strip() for c in line.split("│")[2:-1]] for line in out.splitlines() if line.count("│") == 4}
    assert rows == {"n_prompts": ["500", "500"], "greedy_accuracy": ["0.1800", "0.5480"], "x": ["nan", ""], "reward/len": ["", "3.5000"]}


@pytest.mark.parametrize("width", [100, 60])
def test_terminal_bars_fit_the_window_and_keep_the_count(width):
    """A 100-column terminal shows the count, the time left and the metrics in full; a narrow one cuts the
    metrics with an ellipsis, never the count."""
    out = Console(width=width, file=StringIO(), force_terminal=True, color_system=None, record=True)
    bars = console._progress(out)
    info = "reward 0.295  eval 0.444  len 3.68  s/step 0.812"
    bars.add_task("train", total=150, completed=50, count="50/150 steps", left="~1:15 left", info=info)
    out.print(bars.get_renderable())
    line = out.export_text().splitlines()[0]
    assert len(line) <= width and "50/150 steps" in line and "~1:15 left" in line
    assert (info in line) == (width == 100) and (line.rstrip().endswith("…") or width == 100)


def test_metric_info_shows_the_numbers_present():
    keys = {"reward/mean": "reward", "eval/greedy_accuracy": "eval", "time/step": "s/step"}
    assert console.metric_info({"reward/mean": 0.29512, "time/step": 0.8123, "other": 1.0}, keys) == "reward 0.295  s/step 0.812"
    assert console.metric_info({"reward/mean": None}, keys) == ""


def test_clock():
    assert [console.clock(s) for s in (7, 125, 3725.9)] == ["0:07", "2:05", "1:02:05"]


@pytest.mark.parametrize("n", [1, 3])
def test_evaluation_generates_whole_engine_batches_with_the_completions_of_one_call(tiny_model_path, n, capsys):
    """Evaluation reports progress per engine batch; the completions (sampled ones too) are exactly those
    one call would give, so splitting changes no result."""
    from rlpost.evaluate import generate
    from rlpost.rollout.hf_engine import HFEngine

    requests = [Request(prompt_ids=[5 + i % 7, 9, 11 + i % 3], key=i) for i in range(10)]
    sampling = SamplingParams(n=n, max_new_tokens=4, temperature=1.0)
    whole = HFEngine(tiny_model_path, seed=3, batch_size=4).generate(requests, sampling)
    engine = HFEngine(tiny_model_path, seed=3, batch_size=4)
    calls = []
    engine_generate = engine.generate
    engine.generate = lambda reqs, sp: calls.append(len(reqs)) or engine_generate(reqs, sp)
    with console.phase("eval", len(requests) * n, "completions", every=1) as bar:
        parts = generate(engine, requests, sampling, bar)
    assert [(c.key, c.token_ids) for c in parts] == [(c.key, c.token_ids) for c in whole]
    assert all(size * n % 4 == 0 for size in calls[:-1]) and sum(calls) == 10  # whole batches of 4 rows
    assert f"eval: {10 * n}/{10 * n} completions (100%)" in capsys.readouterr().out


def test_the_hf_engine_uses_the_cache_keyword_of_the_installed_transformers(tiny_model_path):
    """No deprecation notice on any forward (transformers 5.24 renamed ``past_key_values`` to ``cache``)."""
    import inspect

    import transformers

    from rlpost.models.forward import with_cache
    from rlpost.rollout.hf_engine import HFEngine

    engine = HFEngine(tiny_model_path, seed=0)
    (keyword,) = with_cache(engine.model, None)
    assert keyword in inspect.signature(type(engine.model).forward).parameters
    logger = transformers.utils.logging.get_logger("transformers")
    stream = StringIO()
    handler = __import__("logging").StreamHandler(stream)
    logger.addHandler(handler)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            engine.generate([Request(prompt_ids=[5, 6, 7])], SamplingParams(n=2, max_new_tokens=3, temperature=1.0))
    finally:
        logger.removeHandler(handler)
    assert "deprecated" not in stream.getvalue()


def test_a_piped_run_shows_every_phase_in_plain_lines_and_no_warning(tmp_path):
    """`rlpost train` with its output in a file, as under CI or nohup: SFT, actor start-up, evaluation and
    training each show progress; evaluations print as tables; nothing warns, nothing is cut short."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_AUTH_MODE"}
    env.update(HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    args = [
        "train", "recipes/quickstart.yaml", f"run.output_dir={tmp_path}/run", "sft.steps=20", "sft.log_every=10",
        "train.steps=4", "log.every=2", "train.eval_every=2", "train.prompts_per_step=4", "rollout.n=4", "eval.limit=8",
        "cluster.num_cpus=2", "log.tensorboard=false",
    ]
    # ~30 s alone; the timeout only catches a hang (at load 5 beside a training run it took over 300 s)
    proc = subprocess.run([sys.executable, "-m", "rlpost.cli", *args], cwd=REPO, capture_output=True, text=True, timeout=900, env=env)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    for expected in (
        "sft: 20 steps ...", "sft 10/20 steps (50%)", "sft: 20/20 steps (100%) in", "start the learner and rollout worker (ray): done in",
        "eval before: 8/8 completions (100%) in", "held-out evaluation before RL", "train: 4 steps ...", "train 2/4 steps (50%)",
        "held-out evaluation after step 2", "train: 4/4 steps (100%) in", f"held-out evaluation of {tmp_path}/run", "done: 4 steps",
    ):
        assert expected in out, f"{expected!r} not in:\n{out}"
    assert not re.search(r"warn|deprecat|traceback|…", out, re.IGNORECASE), out
    assert re.search(r"│ greedy_accuracy +│ +\d\.\d{4} │ +\d\.\d{4} │ +\d\.\d{4} │", out), out  # before, step2, after


def test_titles_and_cells_with_brackets_are_text_not_markup(capsys, monkeypatch):
    """A user's path such as runs/[/x] in a title or a table is printed as it is, on a terminal too."""
    out = Console(width=100, file=StringIO(), force_terminal=True, color_system=None, record=True)
    monkeypatch.setattr(console, "_console", lambda: out)
    with console.phase("convert [/x] to runs/[bold]", 2, "steps") as bar:
        bar.update(1)
    console.table("eval of runs/[/x]", {"[/y]": {"[red]": 0.5}})
    text = out.export_text()
    assert "convert [/x] to runs/[bold]: 1/2 steps (50%) in 0:00" in text
    assert "eval of runs/[/x]" in text and "[/y]" in text and "[red]" in text


def test_log_records_go_to_whatever_stderr_is_now(capsys):
    """The CLI's log handler looks sys.stderr up per record, so records land above the live bars (rich swaps
    sys.stderr while they show) instead of through them."""
    import logging

    from rlpost.cli import _CurrentStderr

    logger = logging.getLogger("rlpost.test_console")
    handler = _CurrentStderr()
    logger.addHandler(handler)
    try:
        swapped = StringIO()
        real, sys.stderr = sys.stderr, swapped
        try:
            logger.warning("the rollout worker restarted")
        finally:
            sys.stderr = real
    finally:
        logger.removeHandler(handler)
    assert "the rollout worker restarted" in swapped.getvalue()
