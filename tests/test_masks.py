"""Sparse masks and the masked AdamW, on the spec's hand-computed numbers (§8 tests 19-25)."""
from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from rlpost.learner.modes.masked_adamw import MaskedAdamW
from rlpost.learner.modes.masks import MaskError, SparseMask, k_for, update_sparsity


def test_diff_mask_with_and_without_tolerance():
    base = {"w": torch.tensor([0.5, 2**-10, -0.25, 3.0])}
    tuned = {"w": torch.tensor([0.50390625, 2**-10 + 2**-17, -0.25, 3.0])}
    exact = SparseMask.from_diff(base, tuned, tol=0.0)
    assert exact.indices["w"].tolist() == [0, 1]
    assert update_sparsity(base["w"], tuned["w"]) == pytest.approx(0.5)
    tol = SparseMask.from_diff(base, tuned, tol=1e-5)  # the second delta, 7.63e-6, counts as unchanged
    assert tol.indices["w"].tolist() == [0]
    assert update_sparsity(base["w"], tuned["w"], tol=1e-5) == pytest.approx(0.75)


def test_bitwise_diff_flags_signed_zero_but_not_an_unchanged_nan():
    a = torch.tensor([0.0, float("nan"), 1.0])
    b = torch.tensor([-0.0, float("nan"), 1.0])
    assert SparseMask.from_diff({"w": a}, {"w": b}).indices["w"].tolist() == [0]


def test_random_mask_counts_and_reproducibility(tmp_path):
    assert k_for(10, 0.2) == 2 and k_for(7, 0.2) == 1
    m = SparseMask.random({"big": (1000, 1000), "small": (10,)}, 0.2, seed=3)
    assert m.indices["big"].numel() == 200_000 and m.indices["small"].numel() == 2
    assert torch.equal(m.indices["big"], m.indices["big"].sort().values)
    other_seed = SparseMask.random({"big": (1000, 1000)}, 0.2, seed=4)
    assert not torch.equal(m.indices["big"], other_seed.indices["big"])
    # the same seed gives the same mask in another process (no salted hash())
    code = (
        "from rlpost.learner.modes.masks import SparseMask;"
        "print(SparseMask.random({'big': (1000, 1000), 'small': (10,)}, 0.2, seed=3).fingerprint())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == m.fingerprint()


def test_score_top_k_breaks_ties_by_lower_index():
    m = SparseMask.from_scores({"w": torch.tensor([0.5, 0.1, 0.9, 0.3, 0.7])}, 0.4)
    assert m.indices["w"].tolist() == [2, 4]
    ties = SparseMask.from_scores({"w": torch.tensor([1.0, 1.0, 1.0, 1.0])}, 0.5)
    assert ties.indices["w"].tolist() == [0, 1]


def test_density_outside_range_is_refused():
    for bad in (0.0, -0.1, 1.5):
        with pytest.raises(MaskError, match="density"):
            SparseMask.random({"w": (4, 4)}, bad, seed=0)


def test_overlap_matches_the_spec_example():
    a = SparseMask({"w": torch.arange(0, 6)}, {"w": (10,)}, "t")
    b = SparseMask({"w": torch.tensor([3, 4, 5, 6])}, {"w": (10,)}, "t")
    assert a.overlap(b) == (pytest.approx(0.5), pytest.approx(0.75))


def test_mask_file_round_trip_and_shape_mismatch_named(tmp_path):
    m = SparseMask.random({"a.weight": (4, 8), "b.weight": (3, 3)}, 0.25, seed=0)
    m.save(tmp_path / "mask.safetensors")
    back = SparseMask.load(tmp_path / "mask.safetensors")
    assert back.fingerprint() == m.fingerprint() and back.shapes == m.shapes
    with pytest.raises(MaskError, match=r"'a.weight' has shape \(4, 8\), the model has \(8, 4\)"):
        back.check_against({"a.weight": (8, 4), "b.weight": (3, 3)})
    with pytest.raises(MaskError, match="'c.weight'"):
        back.check_against({"a.weight": (4, 8), "b.weight": (3, 3), "c.weight": (2, 2)})
    with pytest.raises(MaskError, match="not found"):
        SparseMask.load(tmp_path / "missing.safetensors")


def test_masked_adamw_matches_spec_and_stock_adamw_leaks():
    p = torch.nn.Parameter(torch.tensor([1.0, 2.0, 3.0, 4.0]))
    opt = MaskedAdamW([p], [torch.tensor([0, 2])], lr=0.1, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)
    p.grad = torch.full((4,), 0.1)
    opt.step()
    assert p.data.tolist() == pytest.approx([0.89900001, 2.0, 2.89700001, 4.0], abs=1e-7)
    assert p.data[1].item() == 2.0 and p.data[3].item() == 4.0  # bit-identical
    assert opt.state_numel() == 4  # m and v for 2 entries

    naive = torch.nn.Parameter(torch.tensor([1.0, 2.0, 3.0, 4.0]))
    stock = torch.optim.AdamW([naive], lr=0.1, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)
    naive.grad = torch.full((4,), 0.1) * torch.tensor([1.0, 0.0, 1.0, 0.0])
    stock.step()
    assert naive.data.tolist() == pytest.approx([0.89900001, 1.998, 2.89700001, 3.996], abs=1e-6)


def test_stale_momentum_moves_a_dropped_entry_under_naive_adam_only():
    naive = torch.nn.Parameter(torch.tensor([1.0]))
    stock = torch.optim.Adam([naive], lr=0.1)
    naive.grad = torch.tensor([0.1])
    stock.step()
    before = naive.item()
    naive.grad = torch.tensor([0.0])  # dropped from the mask: zero gradient
    stock.step()
    assert before - naive.item() == pytest.approx(0.0670, abs=1e-4)

    p = torch.nn.Parameter(torch.tensor([1.0, 1.0]))
    opt = MaskedAdamW([p], [torch.tensor([0, 1])], lr=0.1)
    p.grad = torch.tensor([0.1, 0.1])
    opt.step()
    opt.set_masks([torch.tensor([1])])  # entry 0 leaves the mask
    frozen = p.data[0].item()
    p.grad = torch.tensor([0.0, 0.1])
    opt.step()
    assert p.data[0].item() == frozen
