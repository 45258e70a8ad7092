"""Named prompt tasks: ``fn(split, **kwargs) -> records`` with at least ``question`` and ``answer``."""
from __future__ import annotations

import random
import re
from collections import Counter
from typing import Any, Callable

from rlpost.data.errors import DataError
from rlpost.data.loaders import load_records, require_columns
from rlpost.data.paths import shared_data_path
from rlpost.registry import Registry
from verifiers.expression import expression_value

Record = dict[str, Any]
TaskFn = Callable[..., list[Record]]

TASKS: Registry[TaskFn] = Registry("task", builtins_module="rlpost.ranking.tasks")


def load_task(name: str, split: str, limit: int | None = None, **kwargs: Any) -> list[Record]:
    """Build task ``name`` (registered name, ``pkg.module:fn`` or ``file.py:fn``) and check its records.

    ``limit`` is applied here so plug-in tasks need not implement it; answers are made strings.
    """
    records = TASKS.get(name)(split, **kwargs)
    require_columns(records, ["question", "answer"], f"task '{name}' ({split})")
    records = _take(records, limit)
    return [r if isinstance(r["answer"], str) else {**r, "answer": str(r["answer"])} for r in records]


def _take(records: list[Record], limit: int | None) -> list[Record]:
    if limit is None:
        return records
    if limit < 0:
        raise DataError(f"limit must be >= 0, got {limit}")
    return records[:limit]


def _check_split(task: str, split: str, allowed: tuple[str, ...]) -> None:
    if split not in allowed:
        raise DataError(f"task '{task}' has no split '{split}' (available splits: {', '.join(allowed)})")


_OPS: dict[str, Callable[[int, int], int]] = {
    "+": lambda a, b: a + b,
    "-": lambda a, b: a - b,
    "*": lambda a, b: a * b,
}


@TASKS.register("arithmetic")
def arithmetic(
    split: str,
    n_train: int = 2000,
    n_test: int = 500,
    digits: int | list[int] = 2,
    ops: str = "+",
    terms: int = 2,
    levels: list[dict[str, Any]] | None = None,
    work: float = 0.0,
    seed: int = 0,
    limit: int | None = None,
) -> list[Record]:
    """Seeded problems ``"12+34"`` -> ``"46"``: ``terms`` operands of ``digits`` digits (0-9 for one
    digit) joined by operators drawn from ``ops``, valued with the usual precedence.

    Harder levels for tasks with headroom at large k: more terms (``terms=3``: ``"12+34-56"``), more
    digits, mixed operations (``ops="+-"``), or mixed sizes (``digits=[1, 2, 3]``: each operand's
    size is drawn from the list). ``levels`` mixes difficulties in one set, as math sets do: a list
    of ``{digits, ops, terms, name}`` (missing keys from the arguments); each problem's level is drawn
    uniformly and recorded in the ``level`` column (default name e.g. ``"3x2d+-"``), so evaluation
    reports accuracy per level. One seeded stream of distinct problems is drawn: the first
    ``n_test`` are the test split and the next ``n_train`` the train split, so the splits are
    disjoint and the test set does not change when ``n_train`` does.

    Every record has a ``solution`` for SFT (``sft.target_template: "{solution}"``): the answer, or for
    a seeded fraction ``work`` of the records the worked steps, one fold of the first two operands per
    ``=``: ``"12+34-5"`` -> ``"46-5=41"``. Showing work costs tokens and may help the answer: a
    trade-off for multi-objective rewards (recipes/multi-objective.yaml). Only for ``+``/``-``.
    """
    _check_split("arithmetic", split, ("train", "test"))
    if not 0.0 <= work <= 1.0 or (work and "*" in ops + "".join(str(lv.get("ops", "")) for lv in levels or [])):
        raise DataError(f"arithmetic: work must be in [0, 1] and needs ops made of + and - only, got work={work}, ops='{ops}'")
    if levels is not None and (not isinstance(levels, list) or not levels or not all(isinstance(lv, dict) for lv in levels)):
        raise DataError(f"arithmetic: levels must be a non-empty list of {{digits, ops, terms, name}} mappings, got {levels!r}")
    specs = [_level(lv, digits, ops, terms, i) for i, lv in enumerate(levels or [{}])]
    if len({sp["name"] for sp in specs}) < len(specs):
        raise DataError(f"arithmetic: level names must be distinct, got {[sp['name'] for sp in specs]}")
    n_total = n_train + n_test
    n_distinct = sum(sp["distinct"] for sp in specs)
    if n_train < 0 or n_test < 0 or n_total > n_distinct:
        raise DataError(
            f"arithmetic: n_train={n_train} + n_test={n_test} must be >= 0 and at most the "
            f"{n_distinct} distinct problems with digits={digits}, ops='{ops}', terms={terms}"
            + (f", levels={levels}" if levels else "")
        )
    # random.Random seeded with an int is reproducible across processes (no hash() salting).
    rng = random.Random(seed)

    def operand(sizes: list[int], ranges: dict[int, tuple[int, int]]) -> int:
        lo, hi = ranges[sizes[0] if len(sizes) == 1 else rng.choice(sizes)]
        return rng.randint(lo, hi)

    seen: set[str] = set()
    problems: list[tuple[str, str]] = []
    draws = 0
    while len(problems) < n_total:
        draws += 1
        if draws > 100 * n_total + 10000:  # overlapping levels share problems: fewer distinct than counted
            raise DataError(f"arithmetic: cannot draw {n_total} distinct problems from levels={levels} (they overlap): "
                            "lower n_train / n_test or make the levels disjoint")
        sp = specs[rng.randrange(len(specs))] if len(specs) > 1 else specs[0]  # one level: the stream is unchanged
        text = str(operand(sp["sizes"], sp["ranges"]))
        for _ in range(sp["terms"] - 1):
            op = rng.choice(sp["ops"])  # drawn before the operand: the 2-term stream is unchanged
            text += f"{op}{operand(sp['sizes'], sp['ranges'])}"
        if text not in seen:
            seen.add(text)
            problems.append((text, sp["name"]))
    chosen = problems[:n_test] if split == "test" else problems[n_test:]
    shown = random.Random(f"{seed}-work")  # its own stream: the problems do not change with ``work``
    return _take([
        {**_arith_record(text, shown.random() < work), **({"level": name} if levels else {})} for text, name in chosen
    ], limit)


def _level(level: dict[str, Any], digits: Any, ops: str, terms: int, index: int) -> dict[str, Any]:
    """One difficulty level's generator settings, checked; ``distinct``: how many problems it has."""
    unknown = sorted(set(level) - {"digits", "ops", "terms", "name"})
    if unknown:
        raise DataError(f"arithmetic: levels[{index}] has unknown keys {unknown} (expected digits, ops, terms, name)")
    digits, ops, terms = level.get("digits", digits), level.get("ops", ops), level.get("terms", terms)
    where = f"levels[{index}] " if level else ""
    sizes = [digits] if isinstance(digits, int) else list(digits)
    if not sizes or any(not isinstance(d, int) or d < 1 for d in sizes):
        raise DataError(f"arithmetic: {where}digits must be an integer >= 1 or a list of them, got {digits}")
    if not isinstance(terms, int) or terms < 2:
        raise DataError(f"arithmetic: {where}terms must be >= 2, got {terms}")
    if not isinstance(ops, str) or not ops or any(op not in _OPS for op in ops):
        raise DataError(f"arithmetic: {where}ops must be made of {''.join(_OPS)}, got '{ops}'")
    op_list = sorted(set(ops), key=ops.index)
    ranges = {d: (0 if d == 1 else 10 ** (d - 1), 10**d - 1) for d in dict.fromkeys(sizes)}
    n_values = sum(hi - lo + 1 for lo, hi in ranges.values())
    name = str(level.get("name", f"{terms}x{'/'.join(map(str, dict.fromkeys(sizes)))}d{''.join(op_list)}"))
    return {"sizes": sizes, "ranges": ranges, "ops": op_list, "terms": terms, "name": name,
            "distinct": n_values**terms * len(op_list) ** (terms - 1)}


def _arith_record(text: str, show_work: bool = False) -> Record:
    """``{"question": "12+34-5", "answer": "41", "solution": "41" | "46-5=41", "operands": [12, 34, 5],
    "ops": "+-"}`` (2 terms: also a, b, op)."""
    nums = [int(x) for x in re.findall(r"\d+", text)]
    ops = "".join(re.findall(r"[-+*]", text))
    answer = str(expression_value(text))
    record: Record = {
        "question": text, "answer": answer, "solution": worked(nums, ops) if show_work else answer, "operands": nums, "ops": ops,
    }
    if len(nums) == 2:
        record.update(a=nums[0], b=nums[1], op=ops)
    return record


def worked(nums: list[int], ops: str) -> str:
    """Left-to-right folds of a +/- expression, each step's remainder after an ``=``: ``"46-5=41"``."""
    steps, value = [], nums[0]
    for i, op in enumerate(ops):
        value = _OPS[op](value, nums[i + 1])
        steps.append(str(value) + "".join(f"{o}{n}" for o, n in zip(ops[i + 1 :], nums[i + 2 :])))
    return "=".join(steps)


@TASKS.register("target")
def target(
    split: str,
    n_train: int = 10000,
    n_test: int = 100,
    digits: int = 2,
    ops: str = "+-",
    terms: int = 2,
    seed: int = 0,
    limit: int | None = None,
) -> list[Record]:
    """Reach a number: question ``"57"``, and any expression of ``terms`` operands of ``digits`` digits
    joined by operators from ``ops`` whose value is 57 is correct (``"23+34"``, ``"99-42"``, ...): many
    distinct correct answers per prompt, checked by the ``expression`` verifier.

    The reachable targets are shuffled (seeded): the first ``n_test`` are the test split, the rest
    the train split, so no target is in both. A train record holds one random solution in
    ``solution`` (for SFT, ``sft.target_template: "{solution}"``); a target recurs with other solutions.
    ``level`` ranks targets by how many expressions reach them (thirds: easy, medium, hard), so
    evaluation reports accuracy per level.
    """
    _check_split("target", split, ("train", "test"))
    if not isinstance(digits, int) or not isinstance(terms, int) or digits < 1 or terms < 2 or not ops or any(op not in _OPS for op in ops):
        raise DataError(f"target: need digits >= 1, terms >= 2 and ops made of {''.join(_OPS)}, got {digits}, {terms}, '{ops}'")
    rng = random.Random(seed)
    lo, hi = (0 if digits == 1 else 10 ** (digits - 1)), 10**digits - 1
    op_list = sorted(set(ops), key=ops.index)

    def draw() -> str:
        text = str(rng.randint(lo, hi))
        for _ in range(terms - 1):
            text += f"{rng.choice(op_list)}{rng.randint(lo, hi)}"
        return text

    # the reachable targets, from a large seeded sample of expressions; how often a random expression
    # hits a target (how many solutions it has) sets its level: the rarest third "hard", the commonest "easy"
    hits = Counter(expression_value(draw()) for _ in range(20000))
    values = sorted(hits)
    by_hits = sorted(values, key=lambda v: (hits[v], v))
    level = {v: ("hard", "medium", "easy")[min(2, 3 * i // len(by_hits))] for i, v in enumerate(by_hits)}
    rng.shuffle(values)
    if n_test >= len(values):
        raise DataError(f"target: n_test={n_test} leaves no train targets ({len(values)} reachable with these settings)")
    test = values[:n_test]
    if split == "test":
        return _take([{"question": str(v), "answer": str(v), "solution": "", "level": level[v]} for v in test], limit)
    held_out, records = set(test), []
    while len(records) < n_train:
        text = draw()
        value = expression_value(text)
        if value not in held_out:
            records.append({"question": str(value), "answer": str(value), "solution": text, "level": level[value]})
    return _take(records, limit)


@TASKS.register("gsm8k")
def gsm8k(split: str, limit: int | None = None) -> list[Record]:
    """GSM8K from shared data; ``answer`` is the number after ``####`` (commas removed), ``solution`` the full text."""
    _check_split("gsm8k", split, ("train", "test"))
    path = shared_data_path("math", "gsm8k", f"{split}.jsonl")
    rows = load_records(path)
    require_columns(rows, ["question", "answer"], str(path))
    records = []
    for i, row in enumerate(rows):
        solution = row["answer"]
        if "####" not in solution:
            raise DataError(f"{path}: row {i} column 'answer' has no '####' final answer")
        final = solution.rsplit("####", 1)[1].strip().replace(",", "")
        records.append({**row, "answer": final, "solution": solution})
    return _take(records, limit)


@TASKS.register("math500")
def math500(split: str = "test", limit: int | None = None) -> list[Record]:
    """MATH-500 from shared data; ``question`` is ``problem``, ``answer`` the gold answer."""
    _check_split("math500", split, ("test",))
    path = shared_data_path("math", "math500", "test.jsonl")
    rows = load_records(path)
    require_columns(rows, ["problem", "answer"], str(path))
    return _take([{**row, "question": row["problem"], "answer": str(row["answer"])} for row in rows], limit)


@TASKS.register("file")
def file(
    split: str,
    path: str,
    question_column: str = "question",
    answer_column: str = "answer",
    limit: int | None = None,
) -> list[Record]:
    """Any file ``load_records`` reads; the given columns are copied to ``question``/``answer``."""
    rows = load_records(path, split)
    require_columns(rows, [question_column, answer_column], str(path))
    records = [{**row, "question": row[question_column], "answer": str(row[answer_column])} for row in rows]
    return _take(records, limit)


@TASKS.register("code_functions")
def code_functions(
    split: str,
    n_train: int = 2000,
    n_test: int = 200,
    ops: str = "+-*",
    terms: int = 2,
    examples: int = 2,
    hidden: int = 3,
    seed: int = 0,
    limit: int | None = None,
) -> list[Record]:
    """Seeded one-line functions to write from examples, checked by the ``code`` verifier.

    Each problem is ``f(x) = x op a`` (``terms=3``: ``x op a op b``; constants 1-9, operators from
    ``ops``, usual precedence) shown through ``examples`` calls on distinct inputs 0-9. The question
    is the start of the program, up to ``"return "``, so the verifier runs it with ``prefix_key: question``::

        # f(3) == 6
        # f(5) == 8
        def f(x):
            return

    ``solution`` is the rest, without spaces (``"x+3"``, for SFT with ``sft.target_template:
    "{solution}"``; a completion needs no whitespace), ``answer`` the whole reference program,
    ``tests`` one ``assert`` per shown call plus ``hidden`` more on other inputs, and ``level`` the
    operators. The first ``n_test`` distinct questions of one seeded stream are the test split and
    the next ``n_train`` the train split, as for ``arithmetic``.
    """
    _check_split("code_functions", split, ("train", "test"))
    if not ops or any(op not in _OPS for op in ops) or terms not in (2, 3) or not 1 <= examples <= examples + hidden <= 10:
        raise DataError(f"code_functions: need ops made of {''.join(_OPS)}, terms 2 or 3, examples >= 1, hidden >= 0 "
                        f"and examples + hidden <= 10; got ops='{ops}', terms={terms}, examples={examples}, hidden={hidden}")
    op_list = sorted(set(ops), key=ops.index)
    n_distinct = (len(op_list) * 9) ** (terms - 1)
    for k in range(examples):  # ordered choices of distinct shown inputs
        n_distinct *= 10 - k
    if n_train < 0 or n_test < 0 or n_train + n_test > n_distinct:
        raise DataError(f"code_functions: n_train={n_train} + n_test={n_test} must be >= 0 and at most the "
                        f"{n_distinct} distinct problems with ops='{ops}', terms={terms}, examples={examples}")
    rng = random.Random(seed)
    seen: set[str] = set()
    records: list[Record] = []
    while len(records) < n_train + n_test:
        body = "x" + "".join(f"{rng.choice(op_list)}{rng.randint(1, 9)}" for _ in range(terms - 1))
        inputs = rng.sample(range(10), examples + hidden)
        record = _code_record(body, inputs, examples)
        if record["question"] not in seen:
            seen.add(record["question"])
            records.append(record)
    return _take(records[:n_test] if split == "test" else records[n_test:], limit)


def _code_record(body: str, inputs: list[int], examples: int) -> Record:
    """``f(x) = body`` shown on the first ``examples`` inputs and tested on all of them."""
    calls = [f"f({x}) == {expression_value(body.replace('x', str(x)))}" for x in inputs]
    question = "".join(f"# {call}\n" for call in calls[:examples]) + "def f(x):\n    return "
    return {
        "question": question, "answer": f"def f(x):\n    return {body}", "solution": body,
        "tests": [f"assert {call}" for call in calls], "level": "".join(re.findall(r"[-+*]", body)),
    }

