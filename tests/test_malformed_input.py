"""Malformed input never ends in a traceback (issue 17): for every command (train, sft, eval, recipes,
analyze-updates, plot) and every kind of input (recipe values, data files, model paths, masks,
checkpoints, plug-in files, CLI arguments), `rlpost` exits 2 with one line naming the key, file,
column or value and what was expected. Nearly every case fails before any model loads; the
checkpoint cases resume a one-step run of the tiny model."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from rlpost.cli import main

REPO = Path(__file__).resolve().parent.parent

# Overrides that keep a command which got past its checks small, local and inside the test's folder
# ($T); $D is the folder of malformed files below. Each case's own overrides come after these.
FAST = {
    "train": [
        "cluster.mode=local", "train.warm_start=none", "train.steps=1", "train.eval_before=false", "train.eval_after=false",
        "log.progress=false", "log.tensorboard=false", "train.prompts_per_step=2", "rollout.n=2", "rollout.max_new_tokens=2",
        "eval.limit=4", "data.task_kwargs={n_train: 16, n_test: 4}", "verify.num_workers=0", "run.output_dir=$T/run",
    ],
    "sft": ["sft.steps=1", "sft.batch_size=2", "train.eval_after=false", "data.task_kwargs={n_train: 16, n_test: 4}", "run.output_dir=$T/run"],
    "eval": ["eval.limit=2", "eval.max_new_tokens=2", "data.task_kwargs={n_train: 16, n_test: 4}", "verify.num_workers=0", "run.output_dir=$T/run"],
}


def cmd(command: str, *extra: str, recipe: str = "quickstart") -> list[str]:
    """`rlpost COMMAND RECIPE` with the fast overrides, then ``extra``."""
    return [command, recipe, *FAST[command], *extra]


def each(*extra: str, recipe: str = "quickstart", commands: tuple[str, ...] = ("train", "sft", "eval")) -> list[tuple[str, list[str]]]:
    """The same malformed input given to several recipe commands: (command, argv) pairs."""
    return [(c, cmd(c, *extra, recipe=recipe)) for c in commands]


def one_error(argv: list[str], capsys) -> str:
    """Run `rlpost ARGV` in-process: exit 2 and a single stderr line, no traceback; returns the line."""
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rlpost: error: "), err
    return lines[0]


# ------------------------------------------------------------------ malformed files


@pytest.fixture(scope="module")
def bad(tmp_path_factory, tiny_model_path) -> Path:
    """A folder of malformed recipes, data files, plug-ins, masks, model folders and run folders."""
    import torch
    from safetensors import safe_open
    from safetensors.torch import save_file

    from rlpost.learner.modes.masks import SparseMask

    d = tmp_path_factory.mktemp("bad")
    good = '{"question": "1+1", "answer": "2"}\n'
    files: dict[str, str | bytes] = {
        "latin.jsonl": good.encode() + b'{"question": "caf\xe9", "answer": "1"}\n',
        "badline.jsonl": good + '{"question": "2+2", answer: 4}\n',
        "empty.jsonl": "",
        "nocol.jsonl": '{"question": "1+1", "solution": "2"}\n',
        "list.jsonl": "[1, 2]\n",
        "bad.json": '[{"question": "1+1"',
        "data.csv": "question,answer\n1+1,2\n",
        "bad.yaml": "optim:\n  lr: [1e-3\n",
        "list.yaml": "- optim\n- lr\n",
        "latin.yaml": b"description: caf\xe9\n",
        "syntax.py": "def f(:\n    return 1\n",
        "noattr.py": "def other(*args, **kwargs):\n    return [0.0]\n",
        "raises.py": "raise RuntimeError('plug-in broke at import')\n",
        "a_file": "not a folder\n",
        "garbage.safetensors": b"not a safetensors file at all",
        "noconfig/weights.bin": b"",
        "badconfig/config.json": "{not json",
        "runlike/final/config.json": "{}",
        "corrupt/model.safetensors": b"\x00" * 64,
        "latin_metrics/metrics.jsonl": b'{"step": 0, "reward/mean": 0.5}\n{"step": 1, "reward/mean": \xff}\n',
        "list_metrics/metrics.jsonl": "[0.5, 0.6]\n",
        "goodrun/metrics.jsonl": "".join(json.dumps({"step": i, "reward/mean": i / 4}) + "\n" for i in range(4)),
    }
    for name, content in files.items():
        path = d / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content) if isinstance(content, bytes) else path.write_text(content)
    (d / "noweights").mkdir()
    shutil.copy(Path(tiny_model_path) / "config.json", d / "noweights" / "config.json")
    # masks: one for another model, one whose shape does not fit the tiny model, a safetensors file that is no mask
    save_file({"w": torch.zeros(2)}, str(d / "plain.safetensors"))
    SparseMask.random({"other.weight": (4, 4)}, 0.5, 0).save(d / "other_mask.safetensors")
    with safe_open(str(Path(tiny_model_path) / "model.safetensors"), framework="pt") as f:
        shapes = {n: tuple(f.get_slice(n).get_shape()) for n in f.keys() if len(f.get_slice(n).get_shape()) == 2}
    name = next(n for n, s in shapes.items() if s[0] != s[1])
    shapes[name] = shapes[name][::-1]
    SparseMask.random(shapes, 0.5, 0).save(d / "wrong_shape_mask.safetensors")
    return d


def fill(parts: list[str], d: Path, t: Path) -> list[str]:
    """``parts`` with $D (the malformed files) and $T (the test's own folder) filled in."""
    return [p.replace("$D", str(d)).replace("$T", str(t)) for p in parts]


def cases(category: str, rows: list[tuple[str, list[tuple[str, list[str]]] | list[str], list[str]]]) -> list:
    """pytest params ``category-name[-command]`` from (name, argv or [(command, argv)...], expected substrings)."""
    out = []
    for name, argvs, expected in rows:
        pairs = argvs if argvs and isinstance(argvs[0], tuple) else [(argvs[0] if argvs else "none", argvs)]
        out += [pytest.param(argv, expected, id=f"{category}-{name}-{command}") for command, argv in pairs]
    return out


RECIPE_VALUES = cases("recipe", [
    ("negative-lr", [("train", cmd("train", "optim.lr=-1e-4"))], ["'optim.lr'", "greater than or equal to 0", "-1e-4"]),
    ("beta-above-1", [("train", cmd("train", "optim.betas=[1.5, 0.9]"))], ["'optim.betas'", "[0, 1), got [1.5, 0.9]"]),
    ("negative-eps", [("train", cmd("train", "optim.eps=-1"))], ["'optim.eps'"]),
    ("negative-weight-decay", [("train", cmd("train", "optim.weight_decay=-0.1"))], ["'optim.weight_decay'"]),
    ("negative-grad-clip", [("train", cmd("train", "optim.grad_clip=-1"))], ["'optim.grad_clip'"]),
    ("negative-temperature", [("train", cmd("train", "rollout.temperature=-0.5"))], ["'rollout.temperature'", "-0.5"]),
    ("zero-samples", [("train", cmd("train", "rollout.n=0"))], ["'rollout.n'", "greater than or equal to 1"]),
    ("zero-micro-batch", [("train", cmd("train", "train.micro_batch_size=0"))], ["'train.micro_batch_size'"]),
    ("negative-seed", [("train", cmd("train", "run.seed=-1"))], ["'run.seed'"]),
    ("dual-clip-below-1", [("train", cmd("train", "algo.dual_clip=0.5"))], ["'algo.dual_clip'", "greater than 1"]),
    ("negative-kl", [("train", cmd("train", "algo.kl_coef=-0.1"))], ["'algo.kl_coef'"]),
    ("heads-do-not-divide", [("train", cmd("train", "model.tiny.num_heads=3"))], ["'model.tiny'", "num_heads=3"]),
    ("output-dir-field", [("train", cmd("train", "run.output_dir=runs/{nme}"))], ["'run.output_dir'", "{name}"]),
    ("sft-lr", [("sft", cmd("sft", "sft.lr=-1"))], ["'sft.lr'", "greater than or equal to 0"]),
    ("sft-log-every", [("sft", cmd("sft", "sft.log_every=0"))], ["'sft.log_every'"]),
    ("sft-min-lr-ratio", [("sft", cmd("sft", "sft.min_lr_ratio=2"))], ["'sft.min_lr_ratio'", "less than or equal to 1"]),
    ("eval-max-new-tokens", [("eval", cmd("eval", "eval.max_new_tokens=0"))], ["'eval.max_new_tokens'"]),
    ("eval-temperature", [("eval", cmd("eval", "eval.temperature=-1"))], ["'eval.temperature'"]),
    ("eval-limit", each("eval.limit=-5"), ["'eval.limit'", "-5"]),
    ("wrong-type", each("rollout.n=many"), ["'rollout.n'", "'many'"]),
    ("wrong-type-list", each("eval.limit=[1, 2]"), ["'eval.limit'", "[1, 2]"]),
    ("unquoted-braces", each("data.template={0}"), ["'data.template'", "quote it"]),
    ("unknown-key", each("optim.learning_rate=1e-3"), ["unknown key 'optim.learning_rate'"]),
    ("unknown-section", each("optimizer.lr=1e-3"), ["unknown key 'optimizer'"]),
    ("bad-yaml", each(recipe="$D/bad.yaml"), ["$D/bad.yaml", "not valid YAML at line 3"]),
    ("not-a-mapping", each(recipe="$D/list.yaml"), ["$D/list.yaml", "mapping of sections, got list"]),
    ("recipe-not-utf8", each(recipe="$D/latin.yaml"), ["$D/latin.yaml", "not UTF-8", "0xe9 on line 1"]),
    ("mask-file-unset", [("train", cmd("train", "learner.update=sparse", "learner.sparse.mask=file"))], ["learner.sparse.file"]),
    ("diff-unset", [("train", cmd("train", "learner.update=sparse", "learner.sparse.mask=checkpoint_diff"))], ["learner.sparse.diff_base"]),
    # the code verifier's own start-up check (a trial run in its sandbox), before any model loads
    ("code-isolation", each("verify.verifiers=[{name: code, kwargs: {isolation: jail}}]", "rewards=[{name: correctness, kwargs: {verifier: code}}]",
                            commands=("train", "eval")), ["verifier 'code'", "isolation must be one of namespaces, rlimits, got 'jail'"]),
    ("code-limit", each("verify.verifiers=[{name: code, kwargs: {memory_mb: 0}}]", "rewards=[{name: correctness, kwargs: {verifier: code}}]",
                        commands=("train", "eval")), ["verifier 'code'", "memory_mb must be a positive integer, got 0"]),
])

DATA = cases("data", [
    ("missing-file", each("data.task=file", "data.task_kwargs={path: $D/nowhere.jsonl}"), ["data file not found: $D/nowhere.jsonl"]),
    ("not-utf8", each("data.task=file", "data.task_kwargs={path: $D/latin.jsonl}"), ["$D/latin.jsonl", "not UTF-8", "line 2"]),
    ("bad-json-line", each("data.task=file", "data.task_kwargs={path: $D/badline.jsonl}"), ["$D/badline.jsonl", "line 2 is not valid JSON"]),
    ("not-an-object", each("data.task=file", "data.task_kwargs={path: $D/list.jsonl}"), ["$D/list.jsonl", "line 1 is a list, expected a JSON object"]),
    ("missing-column", each("data.task=file", "data.task_kwargs={path: $D/nocol.jsonl}"), ["$D/nocol.jsonl", "missing column 'answer'"]),
    ("renamed-column", each("data.task=file", "data.task_kwargs={path: $D/nocol.jsonl, answer_column: gold}"), ["missing column 'gold'"]),
    ("empty-file", each("data.task=file", "data.task_kwargs={path: $D/empty.jsonl}"), ["$D/empty.jsonl", "no records"]),
    ("bad-json", each("data.task=file", "data.task_kwargs={path: $D/bad.json}"), ["$D/bad.json", "not valid JSON"]),
    ("unsupported-extension", each("data.task=file", "data.task_kwargs={path: $D/data.csv}"), ["$D/data.csv", "unsupported data file extension '.csv'"]),
    ("no-path", each("data.task=file", "data.task_kwargs={}"), ["data.task_kwargs", "'path'", "task 'file'"]),
    ("unknown-task-kwarg", each("data.task_kwargs={n_trian: 16}"), ["data.task_kwargs", "'n_trian'", "it takes: n_train"]),
    ("task-kwarg-type", each("data.task_kwargs={n_train: lots}"), ["'n_train' of task 'arithmetic' must be int", "'lots'"]),
    ("unknown-task", each("data.task=arithmetc"), ["data.task", "unknown task 'arithmetc'"]),
    ("unknown-split", each("data.train_split=validation", "data.eval_split=validation"), ["no split 'validation'"]),
    ("template-column", each("data.template='{problem}='"), ["missing column 'problem'"]),
    ("sft-target-column", [("sft", cmd("sft", "sft.target_template='{steps}'"))], ["missing column 'steps'"]),
])

MODEL_PATHS = cases("model", [
    ("missing-folder", each("model.source=hf", "model.path=$D/no_model"), ["model.path not found: $D/no_model"]),
    ("no-config", each("model.source=hf", "model.path=$D/noconfig"), ["$D/noconfig", "has no config.json"]),
    ("bad-config", each("model.source=hf", "model.path=$D/badconfig"), ["$D/badconfig", "config.json does not load"]),
    ("no-weights", each("model.source=hf", "model.path=$D/noweights"), ["$D/noweights", "holds no weights"]),
    ("hf-without-path", each("model.source=hf"), ["model.path is required for model.source=hf"]),
    ("bad-gguf-name", each("model.source=gguf", "model.path=$D", "model.gguf_file=nope.gguf"), ["model.gguf_file not found: $D/nope.gguf"]),
    ("gguf-package-missing", each("model.source=gguf", "model.path=package:no_such_pkg", "model.gguf_file=x.gguf"), ["package 'no_such_pkg' is not installed"]),
    ("eval-model-missing", ["eval", "quickstart", "--model", "$D/no_model", *FAST["eval"]], ["--model not found: $D/no_model"]),
    ("eval-model-run-folder", ["eval", "quickstart", "--model", "$D/runlike", *FAST["eval"]], ["--model '$D/runlike' has no config.json", "use $D/runlike/final"]),
    ("eval-model-bad-config", ["eval", "quickstart", "--model", "$D/badconfig", *FAST["eval"]], ["--model '$D/badconfig'", "config.json does not load"]),
    ("eval-model-no-weights", ["eval", "quickstart", "--model", "$D/noweights", *FAST["eval"]], ["--model '$D/noweights' holds no weights"]),
    ("eval-model-a-file", ["eval", "quickstart", "--model", "$D/a_file", *FAST["eval"]], ["--model '$D/a_file' has no config.json"]),
    ("diff-base-missing", [("train", cmd("train", "learner.update=sparse", "learner.sparse.mask=checkpoint_diff",
                                         "learner.sparse.diff_base=$D/no_model", "learner.sparse.diff_tuned=$D/no_model"))],
     ["no such model or checkpoint: $D/no_model"]),
])



def sparse_file(path: str) -> list[tuple[str, list[str]]]:
    return [("train", cmd("train", "learner.update=sparse", "learner.sparse.mask=file", f"learner.sparse.file={path}"))]


MASKS = cases("mask", [
    ("missing", sparse_file("$D/no_mask.safetensors"), ["mask file not found: $D/no_mask.safetensors"]),
    ("corrupt", sparse_file("$D/garbage.safetensors"), ["mask file $D/garbage.safetensors is not a readable safetensors file"]),
    ("not-a-mask", sparse_file("$D/plain.safetensors"), ["$D/plain.safetensors is not an rlpost mask file"]),
    ("other-model", sparse_file("$D/other_mask.safetensors"), ["mask file $D/other_mask.safetensors", "'other.weight' does not exist in the model"]),
    ("wrong-shape", sparse_file("$D/wrong_shape_mask.safetensors"), ["mask file $D/wrong_shape_mask.safetensors", "has shape"]),
    ("density", [("train", cmd("train", "learner.update=sparse", "learner.sparse.density=1.5"))], ["'learner.sparse.density'", "1.5"]),
])

PLUGIN_KEYS = {  # where a plug-in goes: (override or overrides with SPEC in it, commands that resolve it)
    "reward": (["rewards=[{name: mine, fn: SPEC}]"], ("train", "eval")),
    "verifier": (["verify.verifiers=[{name: mine, fn: SPEC}]", "rewards=[{name: c, fn: correctness, kwargs: {verifier: mine}}]"], ("train", "eval")),
    "stage": (["algo.shape=[{name: mine, fn: SPEC}]"], ("train",)),
    "callback": (["callbacks=[{name: mine, fn: SPEC}]"], ("train",)),
    "task": (["data.task=SPEC", "data.task_kwargs={}"], ("train", "sft", "eval")),
    "sampler": (["sampler.name=SPEC"], ("train",)),
}
PLUGIN_FILES = {  # spec -> what the line must say
    "missing": ("$T/missing.py:f", ["plug-in file not found", "missing.py"]),
    "syntax-error": ("$D/syntax.py:f", ["plug-in file $D/syntax.py failed to import: SyntaxError"]),
    "name-not-in-file": ("$D/noattr.py:nope", ["$D/noattr.py' has no attribute 'nope'"]),
    "raises-at-import": ("$D/raises.py:f", ["plug-in file $D/raises.py failed to import: RuntimeError: plug-in broke at import"]),
}
PLUGINS = cases("plugin", [
    (f"{kind}-{what}", each(*[o.replace("SPEC", spec) for o in overrides], commands=commands), expected)
    for kind, (overrides, commands) in PLUGIN_KEYS.items() for what, (spec, expected) in PLUGIN_FILES.items()
])

CLI_ARGS = cases("cli", [
    ("no-command", [], ["required: command"]),
    ("unknown-command", ["frobnicate"], ["invalid choice: 'frobnicate'"]),
    ("unknown-option", [(c, [c, "quickstart", "--bogus"]) for c in ("train", "sft", "eval")], ["unrecognized arguments: --bogus"]),
    ("unknown-option-recipes", ["recipes", "--bogus"], ["unrecognized arguments: --bogus"]),
    ("extra-argument-recipes", ["recipes", "quickstart"], ["unrecognized arguments: quickstart"]),
    ("unknown-option-analyze", ["analyze-updates", "$D", "$D", "--bogus"], ["unrecognized arguments: --bogus"]),
    ("unknown-option-plot", ["plot", "$D/goodrun", "--bogus"], ["unrecognized arguments: --bogus"]),
    ("no-recipe", [(c, [c]) for c in ("train", "sft", "eval")], ["required: recipe", "--help"]),
    ("missing-recipe", [(c, [c, "no_such_recipe"]) for c in ("train", "sft", "eval")], ["recipe file not found: no_such_recipe"]),
    ("recipe-a-folder", [(c, [c, "$D"]) for c in ("train", "sft", "eval")], ["recipe file not found: $D"]),
    ("override-no-equals", each("optim.lr"), ["override 'optim.lr' is not of the form key.sub=value"]),
    ("override-no-key", each("=1"), ["override '=1' is not of the form key.sub=value"]),
    ("override-empty-part", each("optim..lr=1"), ["override 'optim..lr=1' is not of the form key.sub=value"]),
    ("override-index", each("rewards.3.name=x"), ["override 'rewards.3.name': index '3' is not in a list of 1"]),
    ("override-not-a-section", each("optim.lr.x=1"), ["'optim.lr' is not a section"]),
    ("eval-model-no-value", ["eval", "quickstart", "--model"], ["argument --model: expected one argument"]),
    ("output-under-a-file", [("train", cmd("train", "run.output_dir=$D/a_file/run"))], ["run.output_dir", "$D/a_file is not a writable folder"]),
    ("sft-output-under-a-file", [("sft", cmd("sft", "sft.output_dir=$D/a_file/sft"))], ["sft.output_dir", "$D/a_file is not a writable folder"]),
    ("eval-output-under-a-file", [("eval", cmd("eval", "eval.output=$D/a_file/e.json"))], ["eval.output", "$D/a_file is not a writable folder"]),
    ("analyze-missing-folders", ["analyze-updates", "$D/no_model", "$D/no_model2"], ["no such model or checkpoint: $D/no_model"]),
    ("analyze-one-folder", ["analyze-updates", "$D/goodrun"], ["required: b"]),
    ("analyze-no-weights", ["analyze-updates", "$D/goodrun", "$D/goodrun"], ["$D/goodrun: no model*.safetensors"]),
    ("analyze-corrupt-weights", ["analyze-updates", "$D/corrupt", "$D/corrupt"], ["$D/corrupt/model.safetensors: not a readable safetensors file"]),
    ("analyze-negative-tol", ["analyze-updates", "$D", "$D", "--tol", "-1"], ["--tol must be >= 0"]),
    ("analyze-tol-not-a-number", ["analyze-updates", "$D", "$D", "--tol", "tiny"], ["argument --tol: invalid float value: 'tiny'"]),
    ("plot-no-run", ["plot"], ["required: RUN"]),
    ("plot-missing-dir", ["plot", "$D/no_run"], ["no metrics.jsonl in $D/no_run"]),
    ("plot-metrics-not-utf8", ["plot", "$D/latin_metrics"], ["$D/latin_metrics/metrics.jsonl: unreadable"]),
    ("plot-metrics-not-objects", ["plot", "$D/list_metrics"], ["$D/list_metrics/metrics.jsonl: every line must be a JSON object"]),
    ("plot-unknown-metric", ["plot", "$D/goodrun", "--metrics", "reward/meen"], ["metric 'reward/meen'", "available: reward/mean"]),
    ("plot-smooth", ["plot", "$D/goodrun", "--smooth", "0"], ["--smooth must be at least 1"]),
    ("plot-smooth-not-a-number", ["plot", "$D/goodrun", "--smooth", "x"], ["argument --smooth: invalid int value: 'x'"]),
    ("plot-labels", ["plot", "$D/goodrun", "--labels", "a", "b"], ["--labels needs 1 distinct labels"]),
    ("plot-front-arity", ["plot", "$D/goodrun", "--front", "reward/mean"], ["argument --front: expected 2 arguments"]),
    ("plot-minimize", ["plot", "$D/goodrun", "--minimize", "reward/mean"], ["only --front keys can be minimised"]),
    ("plot-out-under-a-file", ["plot", "$D/goodrun", "--out", "$D/a_file/p.png"], ["--out $D/a_file/p.png: cannot write the plot"]),
])


@pytest.mark.parametrize("argv, expected", RECIPE_VALUES + DATA + MODEL_PATHS + MASKS + PLUGINS + CLI_ARGS)
def test_malformed_input_is_one_line(argv, expected, bad, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(REPO)
    line = one_error(fill(argv, bad, tmp_path), capsys)
    for part in fill(expected, bad, tmp_path):
        assert part in line, line


def test_recipes_lists_a_broken_recipe_without_failing(bad, tmp_path, capsys, monkeypatch):
    recipes = tmp_path / "recipes"
    recipes.mkdir()
    for name in ("bad.yaml", "list.yaml", "latin.yaml"):
        shutil.copy(bad / name, recipes / name)
    (recipes / "fine.yaml").write_text("description: a fine recipe\n")
    monkeypatch.setattr("rlpost.config.RECIPES_DIR", recipes)
    assert main(["recipes"]) == 0
    out, err = capsys.readouterr()
    rows = {line.split()[0]: line for line in out.splitlines()}
    assert set(rows) == {"bad", "fine", "latin", "list"} and "a fine recipe" in rows["fine"]
    assert "unreadable" in rows["bad"] and "unreadable" in rows["latin"] and "not a mapping" in rows["list"]
    assert "Traceback" not in out + err


# ------------------------------------------------------------------ checkpoints


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    """A one-step run of the tiny model with its checkpoint (checkpoints/step_000001)."""
    run = tmp_path_factory.mktemp("trained") / "run"
    assert main(fill(cmd("train"), Path(), run.parent)) == 0
    assert (run / "checkpoints" / "step_000001" / "controller.pt").is_file()
    return run


def damage(run: Path, rel: str, how: str) -> None:
    path = run / "checkpoints" / "step_000001" / rel
    if how == "garbage":
        path.write_bytes(b"not a checkpoint")
    elif how == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    else:
        path.unlink()


@pytest.mark.parametrize("rel, how", [
    ("controller.pt", "garbage"), ("controller.pt", "truncated"), ("rollout.pt", "garbage"),
    ("learner/learner_state.pt", "truncated"), ("learner/learner_state.pt", "missing"),
    ("learner/model/model.safetensors", "garbage"), ("learner/model/model.safetensors", "truncated"),
])
def test_a_damaged_checkpoint_is_one_line(rel, how, trained_run, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(REPO)
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    damage(run, rel, how)
    line = one_error(fill(cmd("train", "train.steps=2"), Path(), tmp_path), capsys)
    assert f"checkpoint {run / 'checkpoints' / 'step_000001'} is damaged ({rel}" in line
    assert "pass --no-resume" in line


def test_no_resume_starts_over_past_a_damaged_checkpoint(trained_run, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(REPO)
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    damage(run, "controller.pt", "garbage")
    assert main([*fill(cmd("train"), Path(), tmp_path), "--no-resume"]) == 0
    assert json.loads((run / "summary.json").read_text())["steps"] == 1


# ------------------------------------------------------------------ in a real process


def test_the_reported_cases_exit_2_without_traceback_in_a_real_process(bad, trained_run, tmp_path):
    """The four inputs issue 17 reported, as a new user runs them: one line on stderr, exit 2."""
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    damage(run, "controller.pt", "truncated")
    argvs = {
        "'optim.lr'": ["train", "quickstart", "optim.lr=-1e-5"],
        f"{bad / 'latin.jsonl'}: not UTF-8": ["sft", "quickstart", "data.task=file", f"data.task_kwargs={{path: {bad / 'latin.jsonl'}}}"],
        "is damaged": fill(cmd("train", "train.steps=2"), bad, tmp_path),
        "--model not found": ["eval", "quickstart", "--model", str(tmp_path / "no_model")],
    }
    for expected, argv in argvs.items():
        proc = subprocess.run([sys.executable, "-m", "rlpost.cli", *argv], cwd=REPO, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2, proc.stderr
        assert "Traceback" not in proc.stdout + proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("rlpost: error: ") and expected in lines[0], proc.stderr
