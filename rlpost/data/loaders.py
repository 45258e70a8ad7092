"""Load records (one dict per row, every column kept) from jsonl, json, parquet or `datasets` folders."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rlpost.data.errors import DataError
from rlpost.textfile import read_utf8

SUPPORTED_EXTENSIONS = (".jsonl", ".json", ".parquet")


def load_records(path: str | Path, split: str | None = None) -> list[dict[str, Any]]:
    """Load all rows of ``path`` as dicts.

    ``split`` only matters for a ``save_to_disk`` folder holding a DatasetDict; a single file
    or a saved Dataset is taken to be the split itself.
    """
    p = Path(path)
    if not p.exists():
        raise DataError(f"data file not found: {p}")
    if p.is_dir():
        return _load_saved_dataset(p, split)
    suffix = p.suffix.lower()
    if suffix == ".jsonl":
        return _load_jsonl(p)
    if suffix == ".json":
        return _load_json(p)
    if suffix == ".parquet":
        return _load_parquet(p)
    raise DataError(
        f"{p}: unsupported data file extension '{p.suffix}' "
        f"(expected one of {', '.join(SUPPORTED_EXTENSIONS)} or a datasets save_to_disk folder)"
    )


def require_columns(records: list[dict[str, Any]], columns: list[str], source: str) -> None:
    """Raise DataError naming the first missing column, ``source`` and the columns present."""
    if not records:
        raise DataError(f"{source}: no records (expected columns {', '.join(columns)})")
    for i, row in enumerate(records):
        for col in columns:
            if col not in row:
                present = ", ".join(row) or "none"
                where = "" if i == 0 else f" in row {i}"
                raise DataError(f"{source}: missing column '{col}'{where} (columns present: {present})")


def _check_row(row: Any, path: Path, where: str) -> dict[str, Any]:
    if not isinstance(row, dict):
        raise DataError(f"{path}: {where} is a {type(row).__name__}, expected a JSON object")
    return row


def _load_jsonl(path: Path) -> list[dict[str, Any]]:
    records = []
    for lineno, line in enumerate(read_utf8(path, "data file", DataError).split("\n"), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}: line {lineno} is not valid JSON ({e.msg})") from None
        records.append(_check_row(row, path, f"line {lineno}"))
    return records


def _load_json(path: Path) -> list[dict[str, Any]]:
    try:
        data = json.loads(read_utf8(path, "data file", DataError))
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: not valid JSON ({e.msg} at line {e.lineno}); for one object per line use .jsonl") from None
    if isinstance(data, dict) and "data" in data:
        data = data["data"]
    if not isinstance(data, list):
        raise DataError(f"{path}: expected a JSON list of objects or {{\"data\": [...]}}, got a {type(data).__name__}")
    return [_check_row(row, path, f"item {i}") for i, row in enumerate(data)]


def _load_parquet(path: Path) -> list[dict[str, Any]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except pa.ArrowException as e:
        raise DataError(f"{path}: cannot read parquet file ({e})".replace("\n", " ")) from None
    return table.to_pylist()


def _load_saved_dataset(path: Path, split: str | None) -> list[dict[str, Any]]:
    import datasets  # heavy; only needed for this format

    try:
        ds = datasets.load_from_disk(str(path))
    except FileNotFoundError:
        raise DataError(f"{path}: folder is not a datasets save_to_disk folder (no dataset_info.json or dataset_dict.json)") from None
    if isinstance(ds, datasets.DatasetDict):
        splits = sorted(ds)
        if split is None:
            if len(splits) != 1:
                raise DataError(f"{path}: holds several splits, pass one of: {', '.join(splits)}")
            split = splits[0]
        if split not in ds:
            raise DataError(f"{path}: no split '{split}' (available splits: {', '.join(splits)})")
        ds = ds[split]
    return ds.to_list()
