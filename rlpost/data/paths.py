"""Where the shared, read-only data directory lives."""
from __future__ import annotations

import os
from pathlib import Path

from rlpost.data.errors import DataError

SHARED_DATA_ENV = "RLPOST_SHARED_DATA"


def shared_data_dir() -> Path:
    """Return ``$RLPOST_SHARED_DATA`` if set, else ``<repo root>/../shared/data``; raise if it is missing."""
    env = os.environ.get(SHARED_DATA_ENV)
    if env:
        path = Path(env).expanduser()
    else:
        repo_root = Path(__file__).resolve().parents[2]  # rlpost/data/paths.py -> repo root
        path = repo_root.parent / "shared" / "data"
    if not path.is_dir():
        raise DataError(f"shared data directory not found: {path} (set {SHARED_DATA_ENV} to point at it)")
    return path


def shared_data_path(*parts: str) -> Path:
    """Return a path inside the shared data directory (not checked for existence)."""
    return shared_data_dir().joinpath(*parts)
