"""Sparse-subnetwork masks: which entries of each matrix train (flat indices, ascending).

Sources follow the spec (update_modes_and_weight_sync.md §5): the difference of two checkpoints
with a tolerance (the paper's analysis), top-k of a score such as accumulated |grad|, a seeded
random choice (ablation), or a saved file. 1-D tensors (norms, biases) are never masked: they train
densely. Every mask records the shapes it was made for, so a mismatch is caught by name.
"""
from __future__ import annotations

import hashlib
import json
import zlib
from collections.abc import Mapping
from pathlib import Path

import torch

from rlpost.config import ConfigError


class MaskError(ConfigError):
    """A mask that does not fit the model, or an invalid mask request (a user error: one line, exit 2)."""


def _index_dtype(numel: int) -> torch.dtype:
    return torch.int32 if numel <= 2**31 - 1 else torch.int64


def k_for(numel: int, density: float) -> int:
    """Entries kept at `density`: floor(density * numel + 0.5)."""
    return int(density * numel + 0.5)


class SparseMask:
    """Per-tensor ascending flat indices of the entries that train, plus the shapes they index."""

    file: str | None = None  # the file it was loaded from, named in errors

    def __init__(self, indices: Mapping[str, torch.Tensor], shapes: Mapping[str, tuple[int, ...]], source: str) -> None:
        self.indices = {n: i.to(_index_dtype(_numel(shapes[n]))) for n, i in indices.items()}
        self.shapes = {n: tuple(s) for n, s in shapes.items()}
        self.source = source

    # ------------------------------------------------------------------ sources

    @classmethod
    def random(cls, shapes: Mapping[str, tuple[int, ...]], density: float, seed: int) -> SparseMask:
        """Exactly k_for(numel, density) entries per tensor, from a seeded permutation.

        The per-tensor seed mixes `seed` with crc32(name): Python's hash() of strings is salted per
        process and would give different masks in different processes.
        """
        _check_density(density)
        out = {}
        for name, shape in shapes.items():
            g = torch.Generator().manual_seed((seed * 1_000_003 + zlib.crc32(name.encode())) % 2**63)
            n = _numel(shape)
            out[name] = torch.randperm(n, generator=g)[: k_for(n, density)].sort().values
        return cls(out, shapes, "random")

    @classmethod
    def from_scores(cls, scores: Mapping[str, torch.Tensor], density: float, source: str = "scores") -> SparseMask:
        """Top k_for(numel, density) entries of each tensor by descending score; ties go to the lower index."""
        _check_density(density)
        out, shapes = {}, {}
        for name, s in scores.items():
            flat = s.detach().reshape(-1).double()
            n = flat.numel()
            # Stable sort on -score keeps equal scores in index order.
            order = torch.sort(-flat, stable=True).indices
            out[name] = order[: k_for(n, density)].sort().values.cpu()  # masks live on the CPU (export, checkpoints)
            shapes[name] = tuple(s.shape)
        return cls(out, shapes, source)

    @classmethod
    def from_diff(cls, base: Mapping[str, torch.Tensor], tuned: Mapping[str, torch.Tensor], tol: float = 0.0) -> SparseMask:
        """Entries that changed from `base` to `tuned`: bitwise when tol == 0, else |delta| > tol."""
        missing = sorted(set(base) ^ set(tuned))
        if missing:
            raise MaskError(f"the two checkpoints differ in tensor names (e.g. '{missing[0]}')")
        out, shapes = {}, {}
        for name, a in base.items():
            b = tuned[name]
            if a.shape != b.shape:
                raise MaskError(f"tensor '{name}' has shape {tuple(a.shape)} in one checkpoint and {tuple(b.shape)} in the other")
            changed = changed_entries(a, b, tol)
            out[name] = changed.reshape(-1).nonzero().reshape(-1)
            shapes[name] = tuple(a.shape)
        return cls(out, shapes, f"checkpoint_diff(tol={tol})")

    # ------------------------------------------------------------------ use

    def check_against(self, shapes: Mapping[str, tuple[int, ...]], what: str = "the model") -> None:
        """Every masked tensor exists in `shapes` with the same shape, and every matrix is masked."""
        where = f"mask file {self.file}: " if self.file else ""
        for name, shape in self.shapes.items():
            if name not in shapes:
                raise MaskError(f"{where}mask tensor '{name}' does not exist in {what}")
            if tuple(shapes[name]) != shape:
                raise MaskError(f"{where}mask tensor '{name}' has shape {shape}, {what} has {tuple(shapes[name])}")
        unmasked = sorted(set(shapes) - set(self.shapes))
        if unmasked:
            raise MaskError(f"{where}the mask has no entry for '{unmasked[0]}' of {what} ({len(unmasked)} tensors missing)")

    def nnz(self) -> int:
        return sum(int(i.numel()) for i in self.indices.values())

    def numel(self) -> int:
        return sum(_numel(s) for s in self.shapes.values())

    def density(self, name: str | None = None) -> float:
        if name is not None:
            return self.indices[name].numel() / max(1, _numel(self.shapes[name]))
        return self.nnz() / max(1, self.numel())

    def fingerprint(self) -> str:
        h = hashlib.sha256()
        for name in sorted(self.indices):
            h.update(name.encode())
            h.update(json.dumps(self.shapes[name]).encode())
            h.update(self.indices[name].to(torch.int64).numpy().tobytes())
        return h.hexdigest()[:16]

    def overlap(self, other: SparseMask) -> tuple[float, float]:
        """(|I1 & I2| / |I1|, |I1 & I2| / |I2|) over all tensors (spec §5.1)."""
        inter = 0
        for name, idx in self.indices.items():
            if name in other.indices:
                inter += int(torch.isin(idx.long(), other.indices[name].long()).sum())
        return inter / max(1, self.nnz()), inter / max(1, other.nnz())

    def save(self, path: str | Path) -> None:
        from safetensors.torch import save_file

        meta = {"source": self.source, "shapes": json.dumps(self.shapes), "fingerprint": self.fingerprint()}
        save_file({n: i.contiguous() for n, i in self.indices.items()}, str(path), metadata=meta)

    @classmethod
    def load(cls, path: str | Path) -> SparseMask:
        """A mask saved by ``save``; MaskError naming the file when it is missing, unreadable or inconsistent."""
        from safetensors import SafetensorError, safe_open

        if not Path(path).is_file():
            raise MaskError(f"mask file not found: {path}")
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
                if "shapes" not in meta:
                    raise MaskError(f"{path} is not an rlpost mask file (no 'shapes' metadata)")
                indices = {n: f.get_tensor(n) for n in f.keys()}
        except (SafetensorError, OSError) as e:
            raise MaskError(f"mask file {path} is not a readable safetensors file ({' '.join(str(e).split())})") from None
        try:
            shapes = {n: tuple(int(d) for d in s) for n, s in json.loads(meta["shapes"]).items()}
        except (ValueError, TypeError, AttributeError):
            raise MaskError(f"mask file {path}: its 'shapes' metadata is not a JSON mapping of tensor name to shape") from None
        for name, idx in indices.items():
            if name not in shapes:
                raise MaskError(f"mask file {path}: tensor '{name}' has no shape in the 'shapes' metadata")
            if idx.dim() != 1 or idx.dtype.is_floating_point or idx.dtype == torch.bool:
                raise MaskError(f"mask file {path}: '{name}' must be a 1-D tensor of integer indices, got {idx.dtype} of shape {tuple(idx.shape)}")
            n = _numel(shapes[name])
            if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= n):
                raise MaskError(f"mask file {path}: indices of '{name}' fall outside its {n} entries")
        mask = cls(indices, {n: shapes[n] for n in indices}, meta.get("source", "file"))
        mask.file = str(path)
        return mask


def update_sparsity(a: torch.Tensor, b: torch.Tensor, tol: float = 0.0) -> float:
    """1 - (changed entries / entries), the paper's definition."""
    return 1.0 - float(changed_entries(a, b, tol).sum()) / max(1, a.numel())


def changed_entries(a: torch.Tensor, b: torch.Tensor, tol: float) -> torch.Tensor:
    """Boolean tensor of the entries that differ: bitwise when tol == 0, else |b - a| > tol."""
    if tol == 0.0:
        return _bits(a) != _bits(b)  # bitwise: -0.0 vs +0.0 counts, an unchanged NaN does not
    return (b.double() - a.double()).abs() > tol


def _bits(t: torch.Tensor) -> torch.Tensor:
    int_dtype = {torch.float32: torch.int32, torch.bfloat16: torch.int16, torch.float16: torch.int16, torch.float64: torch.int64}
    return t.contiguous().view(int_dtype[t.dtype]) if t.dtype in int_dtype else t


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n


def _check_density(density: float) -> None:
    if not 0.0 < density <= 1.0:
        raise MaskError(f"sparse density must be in (0, 1], got {density}")
