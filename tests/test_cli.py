"""The CLI: user errors exit 2 with one line naming the problem, before any model loads."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def rlpost(*args: str, cwd: Path = REPO, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "rlpost.cli", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


@pytest.mark.parametrize(
    "args, expected",
    [
        (["train", "recipes/quickstart.yaml", "model.hiden_size=3"], "unknown key 'model.hiden_size'"),
        (["train", "recipes/quickstart.yaml", "rollout.n=abc"], "'rollout.n'"),
        (["train", "missing_recipe.yaml"], "recipe file not found: missing_recipe.yaml"),
        (["train", "recipes/quickstart.yaml", "data.template={questio}="], "'questio'"),
        (["train", "recipes/quickstart.yaml", "data.task=file", "data.task_kwargs={path: /nonexistent.jsonl}"], "/nonexistent.jsonl"),
        (["eval", "recipes/quickstart.yaml", "verify.verifiers.0.answer_key=x"], "unknown key 'verify.verifiers.0.answer_key'"),
        (["eval", "recipes/quickstart.yaml", "verify.verifiers.0.kwargs={answer_key: gold}"], "'gold'"),
        (["train", "recipes/quickstart.yaml", "verify.verifiers.0.fn=nowhere.py:check"], "nowhere.py"),
        (["train", "recipes/quickstart.yaml", "algo.advantage=grpoo"], "grpoo"),
        (["train", "recipes/quickstart.yaml", "rollout.engine=tpu"], "unknown rollout engine 'tpu'"),
        (["train", "recipes/quickstart.yaml", "learner.update=lora", "learner.lora.target_modules=[nope_proj]"], "'nope_proj' matches no linear layer"),
        (["train", "recipes/quickstart.yaml", "learner.update=sparse", "learner.sparse.density=0"], "'learner.sparse.density'"),
        (["sft", "recipes/erank/tiny.yaml", "sft.update=lora", "learner.lora.target_modules=[nope_proj]"], "'nope_proj' matches no linear layer"),
        (["train", "recipes/quickstart.yaml", "learner.update=sparse", "learner.sparse.mask=file", "learner.sparse.file=/none.safetensors"], "mask file not found: /none.safetensors"),
    ],
)
def test_user_errors_exit_2_with_one_line(args, expected, capsys, monkeypatch):
    from rlpost.cli import main

    monkeypatch.chdir(REPO)
    assert main(args) == 2
    err = capsys.readouterr().err
    lines = [l for l in err.splitlines() if l.startswith("rlpost: error:")]
    assert len(lines) == 1, err
    assert expected in lines[0]


def test_a_real_process_exits_2_without_traceback():
    proc = rlpost("train", "recipes/quickstart.yaml", "model.hiden_size=3")
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        "rlpost: error: recipes/quickstart.yaml + overrides: unknown key 'model.hiden_size'"
    )


def test_an_actor_constructors_input_error_is_one_line_without_its_traceback():
    """Errors only an actor's constructor can see (it has the weights) reach the console as the exception's
    own line; the actor's log of the traceback is dropped for input errors and kept for anything else."""
    import logging

    from ray.exceptions import RayActorError

    from rlpost.actors import _InputErrorFilter, ray_error_line

    trace = "ray::Learner.__init__() (pid=1)\n  File \"learner.py\", line 107, in __init__\n    raise ValueError(\n"
    died = RayActorError(error_msg=f"The actor died because of an error raised in its creation task, {trace}ValueError: bad lora",
                         actor_init_failed=True)
    assert ray_error_line(died) == "ValueError: bad lora"
    assert ray_error_line(RayActorError(error_msg="The actor died\n\tpid: 7")) == "The actor died pid: 7"

    def kept(last: str) -> bool:
        record = logging.LogRecord("ray._raylet", logging.ERROR, "", 0, f"Exception raised in creation task: {trace}{last}", None, None)
        return _InputErrorFilter().filter(record)

    assert not kept("ValueError: bad lora") and not kept("rlpost.config.ConfigError: bad key")
    assert kept("AttributeError: 'NoneType' object has no attribute 'x'")  # a bug: its traceback stays
    assert _InputErrorFilter().filter(logging.LogRecord("ray._raylet", logging.ERROR, "", 0, "ValueError: elsewhere", None, None))


def test_missing_column_is_named(tmp_path, capsys, monkeypatch):
    from rlpost.cli import main

    monkeypatch.chdir(REPO)
    data = tmp_path / "d.jsonl"
    data.write_text('{"question": "1+1", "solution": "2"}\n')
    assert main(["train", "recipes/quickstart.yaml", "data.task=file", f"data.task_kwargs={{path: {data}}}"]) == 2
    err = capsys.readouterr().err
    assert "'answer'" in err and str(data) in err


def test_recipes_lists_descriptions():
    proc = rlpost("recipes")
    assert proc.returncode == 0
    assert any(line.startswith("quickstart") and len(line.split()) > 2 for line in proc.stdout.splitlines())


def test_eval_writes_greedy_accuracy_and_pass_at_k(tmp_path, tiny_model_path, monkeypatch, capsys):
    import json

    from rlpost.cli import main

    monkeypatch.chdir(REPO)
    args = ["eval", "quickstart", "--model", tiny_model_path, "eval.limit=6", "eval.samples=4",
            "eval.pass_k=[1,2]", f"run.output_dir={tmp_path}"]
    assert main(args) == 0
    result = json.loads((tmp_path / "eval_eval.json").read_text())
    assert result["n_prompts"] == 6 and {"greedy_accuracy", "pass@1", "pass@2", "pass@4", "verifier_errors"} <= set(result)
    assert result["pass_curve"]["k"] == [1, 2, 4] and len(result["pass_curve"]["se"]) == 3
    assert (tmp_path / "eval_eval.png").stat().st_size > 1000
    assert "greedy_accuracy" in capsys.readouterr().out


def test_pass_curve_ks_and_standard_errors():
    from rlpost.evaluate import pass_curve, pass_curve_ks

    assert pass_curve_ks(64, [1]) == [1, 2, 4, 8, 16, 32, 64]
    assert pass_curve_ks(10, [3, 10]) == [1, 2, 3, 4, 8, 10]
    c = pass_curve(4, [0, 4], [1, 4])
    assert c["pass"] == [0.5, 0.5] and c["se"] == [0.5, 0.5]  # prompts at 0 and 1: std 0.707 / sqrt(2)


def test_pass_k_above_the_sample_count_is_refused():
    from rlpost.config import ConfigError, load_config

    with pytest.raises(ConfigError, match=r"pass_k \[8\] must be between 1 and eval.samples=4"):
        load_config("quickstart", ["eval.samples=4", "eval.pass_k=[1,8]"])


def test_pass_at_k_estimator():
    from rlpost.evaluate import pass_at_k

    assert pass_at_k(4, 0, 2) == 0.0 and pass_at_k(4, 4, 1) == 1.0
    assert pass_at_k(4, 1, 1) == 0.25
    assert pass_at_k(4, 1, 2) == 0.5  # 1 - C(3,2)/C(4,2) = 1 - 3/6
    assert pass_at_k(5, 2, 3) == 1 - 1 / 10  # C(3,3)/C(5,3)
