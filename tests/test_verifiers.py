"""Tests for verifiers: the built-ins on hand-computed cases, and VerifierRunner's pool with real worker processes."""
from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import pytest

from verifiers import VERIFIERS, VerifierRunner
from verifiers.numeric import last_number, parse_number

PLUGINS = Path(__file__).parent / "fixtures" / "plugin_verifiers.py"


def _plugin(fn: str) -> str:
    return f"{PLUGINS}:{fn}"


# ---------------------------------------------------------------- built-ins


def test_builtin_names():
    assert VERIFIERS.names() == ["code", "exact_numeric", "expression", "math", "regex"]


@pytest.mark.parametrize(
    "completion, gold, correct, parsed",
    [
        ("The answer is \\boxed{\\frac{1}{2}}", "0.5", True, "\\frac{1}{2}"),
        ("\\boxed{3}", "4", False, "3"),
        ("so 46", "46", True, "46"),
        ("so 46", 46, True, "46"),  # non-string gold
        # A bare LaTeX gold is wrapped in $...$; without that it would parse to nothing.
        ("$\\boxed{\\frac{\\sqrt{2}}{2}}$", "\\frac{1}{\\sqrt{2}}", True, "\\frac{\\sqrt{2}}{2}"),
        ("I give up", "7", False, ""),
    ],
)
def test_math(completion, gold, correct, parsed):
    assert VERIFIERS.get("math")(completion, {"answer": gold}) == {"correct": correct, "parsed": parsed}


def test_math_gold_already_delimited_and_answer_key():
    math = VERIFIERS.get("math")
    assert math("\\boxed{2}", {"solution": "$\\frac{4}{2}$"}, answer_key="solution")["correct"] is True
    assert math("\\boxed{2}", {"answer": "\\boxed{2}"})["correct"] is True


def test_math_parses_each_distinct_completion_once(monkeypatch):
    import verifiers.math_answer as m

    calls = []
    real = m.parse
    monkeypatch.setattr(m, "parse", lambda text, **kw: calls.append(text) or real(text, **kw))
    m._verdict.cache_clear()
    math = VERIFIERS.get("math")
    verdicts = [math(text, {"answer": "46"}) for text in ["so 46", "so 47", "so 46", "so 46"]]
    assert [v["correct"] for v in verdicts] == [True, False, True, True]
    assert calls.count("so 46") == 1 and calls.count("so 47") == 1  # a group's repeated answer is parsed once
    assert math("so 46", {"answer": "45"})["correct"] is False  # the verdict is per (completion, gold)


def test_math_gold_that_does_not_parse_raises():
    with pytest.raises(ValueError, match="gold answer '' does not parse"):
        VERIFIERS.get("math")("\\boxed{1}", {"answer": ""})


@pytest.mark.parametrize(
    "completion, gold, correct, parsed",
    [
        ("That is 1,234 apples.", "1234", True, "1,234"),
        ("The total is 1,234", 1234, True, "1,234"),
        ("it drops to -3.5 degrees", "-3.5", True, "-3.5"),
        ("it drops to -3.5 degrees", "3.5", False, "-3.5"),
        ("three quarters: 3/4", "0.75", True, "3/4"),
        ("3/4", "3/4", True, "3/4"),
        ("first 2, then 5.", "5", True, "5"),  # the last number counts
        ("5-3", "3", True, "3"),  # a minus glued to a number is subtraction, not a sign
        ("about 1000000.0000001", "1,000,000", True, "1000000.0000001"),  # within rel_tol 1e-6
        ("1000002", "1000000", False, "1000002"),  # 2e-6 relative: outside
        ("no numbers here", "1", False, ""),
        ("divide by 3/0", "3", False, "3/0"),
    ],
)
def test_exact_numeric(completion, gold, correct, parsed):
    assert VERIFIERS.get("exact_numeric")(completion, {"answer": gold}) == {"correct": correct, "parsed": parsed}


def test_exact_numeric_helpers_and_bad_gold():
    assert parse_number("1,234,567") == 1234567.0
    assert parse_number("-.5") == -0.5
    assert last_number("1,2,3") == "3"  # not thousands groups
    with pytest.raises(ValueError, match="not a number"):
        VERIFIERS.get("exact_numeric")("12", {"answer": "twelve"})


def test_regex():
    regex = VERIFIERS.get("regex")
    assert regex("Answer: 42", {}, pattern=r"\d+") == {"correct": True, "matched": True, "parsed": "42"}
    assert regex("Answer: 42", {}, pattern=r"\d+", fullmatch=True) == {"correct": False, "matched": False, "parsed": ""}
    assert regex("DONE", {}, pattern="done", flags="IGNORECASE", fullmatch=True)["matched"] is True
    assert regex("a\nb", {}, pattern="^b$", flags="i|m")["matched"] is True
    assert regex("DONE", {}, pattern="done")["matched"] is False


# ---------------------------------------------------------------- runner


def test_runner_runs_builtins_and_file_plugin_in_reused_workers(monkeypatch):
    monkeypatch.chdir(Path(__file__).parents[1])  # the relative plug-in path below is from the repo root
    specs = [
        ("math", "math", {}),
        ("numeric", "exact_numeric", {}),
        ("boxed", "regex", {"pattern": r"\\boxed\{"}),
        ("mentions", "tests/fixtures/plugin_verifiers.py:contains_answer", {}),
    ]
    completions = ["The answer is \\boxed{\\frac{1}{2}}", "\\boxed{3}", "so 46"]
    records = [{"answer": "0.5"}, {"answer": "4"}, {"answer": "46"}]
    with VerifierRunner(specs, num_workers=2) as runner:
        out = runner.run(completions, records)
        assert [{k: v["correct"] for k, v in row.items()} for row in out] == [
            {"math": True, "numeric": False, "boxed": True, "mentions": False},  # numeric takes the 2 of \frac{1}{2}
            {"math": False, "numeric": False, "boxed": True, "mentions": False},
            {"math": True, "numeric": True, "boxed": False, "mentions": True},
        ]
        assert out[0]["math"]["parsed"] == "\\frac{1}{2}" and out[0]["numeric"]["parsed"] == "2"
        pids = {row["mentions"]["pid"] for row in out}
        assert os.getpid() not in pids

        again = runner.run(["46"] * 8, [{"answer": "46"}] * 8)
        assert all(row["math"]["correct"] and row["mentions"]["correct"] for row in again)
        # Workers live across runs: no new processes were started.
        assert len({row["mentions"]["pid"] for row in out + again}) <= 2
        assert runner.stats()["math"] == {"calls": 11, "errors": 0, "timeouts": 0}
        assert runner.last_run_stats()["math"] == {"calls": 8, "errors": 0, "timeouts": 0}
    for pid in pids:  # close() ended the workers
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


@pytest.mark.timeout(60)
def test_runner_survives_hang_raise_and_crash(caplog):
    specs = [
        ("hang", _plugin("hang_on_marker"), {}),
        ("boom", _plugin("raise_on_marker"), {}),
        ("crash", _plugin("exit_on_marker"), {}),
        ("numeric", "exact_numeric", {}),
    ]
    completions = ["HANG 1", "BOOM 2", "CRASH 3", "4", "HANG BOOM 5"]
    records = [{"answer": str(i)} for i in range(1, 6)]
    with VerifierRunner(specs, timeout_s=1.0, num_workers=1) as runner, caplog.at_level(logging.WARNING):
        out = runner.run(completions, records)
        assert out[0]["hang"] == {"error": "timeout after 1.0s"}
        assert out[4]["hang"] == {"error": "timeout after 1.0s"}
        assert out[1]["boom"] == {"error": "ValueError: cannot judge 'BOOM 2'"}
        assert out[4]["boom"] == {"error": "ValueError: cannot judge 'HANG BOOM 5'"}
        assert out[2]["crash"] == {"error": "worker died (exit code 3)"}
        # Every other item, including those queued behind a hang or a crash, has its real facts.
        assert all(row["numeric"]["correct"] for row in out)
        assert [row["hang"] for row in out[1:4]] == [{"correct": True}] * 3
        assert [out[i]["boom"] for i in (0, 2, 3)] == [{"correct": True}] * 3
        expected = {
            "hang": {"calls": 5, "errors": 0, "timeouts": 2},
            "boom": {"calls": 5, "errors": 2, "timeouts": 0},
            "crash": {"calls": 5, "errors": 1, "timeouts": 0},
            "numeric": {"calls": 5, "errors": 0, "timeouts": 0},
        }
        assert runner.last_run_stats() == expected == runner.stats()
        logged = [r.getMessage() for r in caplog.records if r.name == "rlpost.verifiers"]
        assert "verifier 'hang' failed on completion 0: timeout after 1.0s" in logged
        assert "verifier 'boom' failed on completion 1: ValueError: cannot judge 'BOOM 2'" in logged

        # The pool is healthy afterwards; counters accumulate.
        assert runner.run(["6"], [{"answer": "6"}])[0]["numeric"]["correct"] is True
        assert runner.stats()["hang"] == {"calls": 6, "errors": 0, "timeouts": 2}
        assert runner.last_run_stats()["hang"] == {"calls": 1, "errors": 0, "timeouts": 0}


@pytest.mark.timeout(60)
def test_hung_verifier_does_not_block_the_other_worker():
    n = 40
    completions = ["HANG"] + [str(i) for i in range(1, n)]
    records = [{"answer": c} for c in completions]
    specs = [("hang", _plugin("hang_on_marker"), {}), ("mentions", _plugin("contains_answer"), {})]
    with VerifierRunner(specs, timeout_s=1.0, num_workers=2, max_chunk_size=4) as runner:
        runner.run(["warm-up"] * 2, [{"answer": "x"}] * 2)  # both workers started
        start = time.monotonic()
        out = runner.run(completions, records)
        elapsed = time.monotonic() - start
    assert out[0]["hang"] == {"error": "timeout after 1.0s"}
    assert all(row["hang"] == {"correct": True} and row["mentions"]["correct"] for row in out[1:])
    assert out[0]["mentions"]["correct"] is True  # queued behind the hang in the same chunk, sent again
    # Chunks hold 4 items, so the hung worker held rows 0-1; the other worker finished every later row
    # before the hang's timeout fired (CLOCK_MONOTONIC is system-wide, so worker times compare).
    assert all(row["mentions"]["at"] < start + 1.0 for row in out[2:])
    assert elapsed < 1.0 + 10.0  # one timeout and a respawn, not one per item


def test_inline_mode_records_errors_without_processes():
    specs = [
        ("boom", _plugin("raise_on_marker"), {}),
        ("bad", _plugin("not_a_dict"), {}),
        ("mentions", _plugin("contains_answer"), {}),
    ]
    runner = VerifierRunner(specs, num_workers=0)
    out = runner.run(["BOOM", "ok 1"], [{"answer": "1"}, {"answer": "1"}])
    assert out[0]["boom"] == {"error": "ValueError: cannot judge 'BOOM'"}
    assert out[1]["boom"] == {"correct": True}
    assert out[0]["bad"] == {"error": "TypeError: verifier returned list, expected a dict of facts"}
    assert out[1]["mentions"]["correct"] is True and out[1]["mentions"]["pid"] == os.getpid()
    assert runner.stats() == {
        "boom": {"calls": 2, "errors": 1, "timeouts": 0},
        "bad": {"calls": 2, "errors": 2, "timeouts": 0},
        "mentions": {"calls": 2, "errors": 0, "timeouts": 0},
    }


@pytest.mark.parametrize(
    "specs, message",
    [
        ([("m", "no_such_verifier", {})], "verifier 'm': cannot resolve 'no_such_verifier'"),
        ([("m", "tests/fixtures/missing.py:fn", {})], "plug-in file not found"),
        ([("m", f"{PLUGINS}:no_such_fn", {})], "has no attribute 'no_such_fn'"),
        ([("r", "regex", {})], r"verifier 'r' \('regex'\) does not fit .* kwargs \{\}: missing .*'pattern'"),
        ([("m", "math", {"answer_column": "x"})], "does not fit .*'answer_column'"),
        ([("m", "math", {}), ("m", "exact_numeric", {})], "'m' appears twice"),
    ],
)
def test_bad_specs_fail_at_construction(specs, message):
    with pytest.raises(ValueError, match=message):
        VerifierRunner(specs)


def test_run_checks_lengths():
    with pytest.raises(ValueError, match="2 completions but 1 records"):
        VerifierRunner([("m", "math", {})], num_workers=0).run(["a", "b"], [{}])


def _running(pid: int) -> bool:
    """Whether ``pid`` runs; an exited process nobody reaped (a zombie) does not."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process states from /proc")
@pytest.mark.timeout(60)
def test_workers_exit_when_the_parent_is_killed():
    import subprocess
    import sys

    script = Path(__file__).parent / "fixtures" / "orphaned_runner.py"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=50)
    pids = [int(p) for p in proc.stdout.split()]
    assert proc.returncode == -9 and len(pids) == 2, proc.stderr
    deadline = time.monotonic() + 10
    while any(_running(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_running(pid) for pid in pids)


@pytest.mark.timeout(60)
def test_worker_start_failure_is_raised_with_its_traceback():
    plugin = Path(__file__).parent / "fixtures" / "plugin_fails_in_worker.py"
    with VerifierRunner([("v", f"{plugin}:verify", {})], num_workers=1) as runner:
        assert runner.run([], []) == []  # nothing to do: no worker is started
        with pytest.raises(RuntimeError, match="(?s)worker failed to start.*only importable in the main process"):
            runner.run(["a"], [{}])


def test_exact_numeric_whole_completion():
    from verifiers.numeric import exact_numeric

    rec = {"answer": "-10"}
    assert exact_numeric("-10", rec, whole=True)["correct"]
    assert not exact_numeric("12+34-56", rec, whole=True)["correct"]  # the question echoed back
    assert not exact_numeric("x -10", rec, whole=True)["correct"]
    assert exact_numeric("x -10", rec)["correct"]  # without whole: the last number


def test_expression_verifier_needs_the_form_and_the_value():
    from verifiers.expression import expression

    rec = {"answer": "57"}
    assert expression("23+34", rec, terms=2)["correct"] and expression(" 99-42 ", rec, terms=2, ops="+-")["correct"]
    assert not expression("57", rec)["correct"]  # the target written back is not an expression
    assert not expression("23+35", rec, terms=2)["correct"]
    assert not expression("2+3+52", rec, terms=2)["correct"] and expression("2+3+52", rec)["correct"]
    assert not expression("3*19", rec, ops="+-")["correct"]
    assert not expression("23+3x4", rec)["correct"]


def test_a_verifiers_own_kwargs_check_runs_at_resolution_and_fails_in_one_line():
    """``fn.check_kwargs(**kwargs)`` runs when the recipe's verifiers resolve; whatever it raises becomes one
    ValueError naming the verifier (a plug-in's check may raise anything)."""
    from verifiers.registry import VERIFIERS, resolve_verifiers

    def picky(completion, record, limit=1):
        return {"correct": True}

    def check(limit=1):
        if limit < 0:
            raise ValueError(f"limit must be >= 0, got {limit}")
        if limit > 10:
            raise KeyError("limit")

    picky.check_kwargs = check
    VERIFIERS.register("picky_for_test")(picky)
    assert resolve_verifiers([("p", "picky_for_test", {"limit": 3})]) == [picky]
    with pytest.raises(ValueError, match=r"^verifier 'p': limit must be >= 0, got -1$"):
        resolve_verifiers([("p", "picky_for_test", {"limit": -1})])
    with pytest.raises(ValueError, match=r"^verifier 'p': KeyError: 'limit'$"):
        resolve_verifiers([("p", "picky_for_test", {"limit": 11})])
