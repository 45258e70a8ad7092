"""Named prompt tasks: ``fn(split, **kwargs) -> records`` with at least ``question`` and ``answer``."""
from __future__ import annotations

import random
from typing import Any, Callable

from rlpost.data.errors import DataError
from rlpost.data.loaders import load_records, require_columns
from rlpost.data.paths import shared_data_path
from rlpost.registry import Registry

Record = dict[str, Any]
TaskFn = Callable[..., list[Record]]

TASKS: Registry[TaskFn] = Registry("task")


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
    digits: int = 2,
    ops: str = "+",
    seed: int = 0,
    limit: int | None = None,
) -> list[Record]:
    """Seeded problems ``"12+34"`` -> ``"46"`` on ``digits``-digit operands (0-9 for one digit).

    One seeded stream of distinct problems is drawn: the first ``n_test`` are the test split and the
    next ``n_train`` the train split, so the splits are disjoint and the test set does not change
    when ``n_train`` does.
    """
    _check_split("arithmetic", split, ("train", "test"))
    if digits < 1:
        raise DataError(f"arithmetic: digits must be >= 1, got {digits}")
    if not ops or any(op not in _OPS for op in ops):
        raise DataError(f"arithmetic: ops must be made of {''.join(_OPS)}, got '{ops}'")
    op_list = sorted(set(ops), key=ops.index)
    lo, hi = (0 if digits == 1 else 10 ** (digits - 1)), 10**digits - 1
    n_total = n_train + n_test
    n_distinct = len(op_list) * (hi - lo + 1) ** 2
    if n_train < 0 or n_test < 0 or n_total > n_distinct:
        raise DataError(
            f"arithmetic: n_train={n_train} + n_test={n_test} must be >= 0 and at most the "
            f"{n_distinct} distinct problems with digits={digits}, ops='{ops}'"
        )
    # random.Random seeded with an int is reproducible across processes (no hash() salting).
    rng = random.Random(seed)
    seen: set[tuple[int, str, int]] = set()
    problems: list[tuple[int, str, int]] = []
    while len(problems) < n_total:
        problem = (rng.randint(lo, hi), rng.choice(op_list), rng.randint(lo, hi))
        if problem not in seen:
            seen.add(problem)
            problems.append(problem)
    chosen = problems[:n_test] if split == "test" else problems[n_test:]
    records = [
        {"question": f"{a}{op}{b}", "answer": str(_OPS[op](a, b)), "a": a, "b": b, "op": op}
        for a, op, b in chosen
    ]
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
