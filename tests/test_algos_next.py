"""NExt and the linear baseline on synthetic trajectories with known laws (spec part B.9, numbers by hand)."""
from __future__ import annotations

import math

import pytest
import torch

from rlpost.algos.next import (
    canonical_sign, delta, fit_predictor, group_key, linear_fit, linear_updates, predict_updates, rebuild,
    top_components, trajectory, training_rows,
)

U_STAR = torch.tensor([1.0, 1, 1, 1], dtype=torch.float64) / 2
V_STAR = torch.tensor([1.0, 2, 2], dtype=torch.float64) / 3
W0 = torch.arange(12, dtype=torch.float64).reshape(4, 3) / 10


def s(t: float) -> float:
    return 1 - math.exp(-t / 100)


def weights(t: float, law=s) -> torch.Tensor:
    return W0 + law(t) * torch.outer(U_STAR, V_STAR)


STEPS = list(range(10, 160, 10))


def synthetic(law=s) -> dict:
    return trajectory(STEPS, [{"w": weights(t, law)} for t in STEPS], {"w": W0}, horizon=50)


def test_n1_rank1_extraction_and_sign():
    c = top_components(weights(150) - W0)
    assert float(c.sigma[0]) == pytest.approx(0.7768698, abs=1e-7)
    assert torch.allclose(c.u[:, 0], U_STAR, atol=1e-12) and torch.allclose(c.v[:, 0], V_STAR, atol=1e-12)
    # the flipped pair is mapped back to the same canonical sign
    u, v = canonical_sign(-U_STAR[:, None], -V_STAR[:, None])
    assert torch.equal(u[:, 0], U_STAR) and torch.equal(v[:, 0], V_STAR)
    full = torch.linalg.svdvals(weights(150) - W0)
    assert float(full[1]) < 1e-12


def test_n2_factored_svd_matches_dense():
    B, A = torch.tensor([[1.0], [2.0], [2.0]]), torch.tensor([[3.0, 4.0]])
    fac = top_components(delta((A, B, 1.0), None))
    dense = top_components(B @ A)
    for c in (fac, dense):
        assert float(c.sigma[0]) == pytest.approx(15.0)
        assert torch.allclose(c.u[:, 0], torch.tensor([1.0, 2, 2], dtype=torch.float64) / 3)
        assert torch.allclose(c.v[:, 0], torch.tensor([0.6, 0.8], dtype=torch.float64))
    assert float(top_components(B @ A, 2).sigma[1]) < 1e-12


def test_factored_difference_of_two_lora_products():
    g = torch.Generator().manual_seed(0)
    a1, b1, a0, b0 = (torch.randn(*sh, generator=g) for sh in ((4, 7), (5, 4), (4, 7), (5, 4)))
    d = delta((a1, b1, 2.0), (a0, b0, 2.0))
    fac, dense = top_components(d, 2), top_components(2.0 * (b1 @ a1 - b0 @ a0), 2)
    assert torch.allclose(fac.sigma, dense.sigma, atol=1e-9)
    assert torch.allclose(fac.u, dense.u, atol=1e-9) and torch.allclose(fac.v, dense.v, atol=1e-9)


def test_n3_delta_bookkeeping():
    pts = synthetic()["w"]
    by = {p.step: p for p in pts}
    assert float(by[150].local.sigma[0]) == pytest.approx(s(150) - s(140), abs=1e-7)
    assert float(by[10].local.sigma[0]) == pytest.approx(0.0951626, abs=1e-7) == float(by[10].glob.sigma[0])
    assert float(by[100].target.sigma[0]) == pytest.approx(0.1447493, abs=1e-7)
    assert [p.step for p in pts if p.target is not None] == list(range(10, 110, 10))


def test_n4_affine_predictor_is_exact_and_large_c_overshoots():
    pts = synthetic()
    fits = {key: fit_predictor(rows, kind="affine") for key, rows in training_rows(pts, 1).items()}
    assert fits[("sigma", 1)].loss < 1e-9
    updates, stats = predict_updates(pts, fits, 1)
    # predicted sigma of the next 50 steps: s(200) - s(150)
    sigma = float(torch.linalg.svdvals(updates["w"])[0])
    assert sigma == pytest.approx(0.0877949, abs=1e-7)
    assert torch.allclose(weights(150) + updates["w"], weights(200), atol=1e-9)
    assert sigma * 2 == pytest.approx(0.1755898, abs=1e-7) and s(250) - s(150) == pytest.approx(0.1410452, abs=1e-7)
    assert stats == {"negative_sigma": 0.0, "skipped": 0.0}


def test_n5_linear_baseline_overshoots_a_saturating_law_and_is_exact_on_a_line():
    a, b = linear_fit(STEPS, [s(t) for t in STEPS])
    assert a == pytest.approx(0.1276781, abs=1e-7) and b == pytest.approx(0.00474841, abs=1e-8)
    snaps = [{"w": weights(t)} for t in STEPS]
    up = linear_updates(STEPS, snaps, {"w": W0}, ahead=50)["w"]
    coef = float(U_STAR @ (weights(150) + up - W0) @ V_STAR)
    assert coef == pytest.approx(1.0773601, abs=1e-6)  # the true s(200) is 0.8646647
    line = lambda t: 0.01 * t  # noqa: E731
    up = linear_updates(STEPS, [{"w": weights(t, line)} for t in STEPS], {"w": W0}, ahead=50)["w"]
    assert float(U_STAR @ (weights(150, line) + up - W0) @ V_STAR) == pytest.approx(2.0, abs=1e-9)
    pts = synthetic(line)
    fits = {key: fit_predictor(rows, kind="affine") for key, rows in training_rows(pts, 1).items()}
    up, _ = predict_updates(pts, fits, 1)
    assert float(U_STAR @ (weights(150, line) + up["w"] - W0) @ V_STAR) == pytest.approx(2.0, abs=1e-9)


def test_n6_write_back_arithmetic():
    update, negative = rebuild(torch.tensor([0.5]), torch.tensor([[3.0], [4.0]]), torch.tensor([[0.0], [2.0]]))
    assert negative == 0
    assert torch.allclose(torch.eye(2) + 2 * update, torch.tensor([[1.0, 0.6], [0.0, 1.8]]))
    assert rebuild(torch.tensor([0.5]), torch.zeros(2, 1), torch.ones(2, 1))[0] is None
    assert rebuild(torch.tensor([-0.5]), torch.ones(2, 1), torch.ones(2, 1), clamp_negative=True) == (None, 1)


def test_n7_grouping_by_vector_length():
    g = torch.Generator().manual_seed(1)
    steps = [1, 2, 3]
    snaps = [{"big": torch.randn(8, 4, generator=g), "small": torch.randn(4, 4, generator=g)} for _ in steps]
    origin = {"big": torch.zeros(8, 4), "small": torch.zeros(4, 4)}
    rows = training_rows(trajectory(steps, snaps, origin, horizon=1), 1)
    assert sorted(rows) == [("sigma", 1), ("u", 4), ("u", 8), ("v", 4)]
    assert [r.shape[0] for r in rows[("v", 4)].glob] == [2, 2]  # both matrices, at the two steps with a target
    assert [r.shape[0] for r in rows[("u", 8)].glob] == [1, 1]
    assert group_key("sigma", top_components(torch.eye(3))) == ("sigma", 1)


def test_zero_delta_matrices_are_left_out():
    snaps = [{"w": weights(t), "frozen": W0.clone()} for t in STEPS]
    assert set(trajectory(STEPS, snaps, {"w": W0, "frozen": W0}, horizon=50)) == {"w"}


def test_n8_mlp_learns_fixed_directions_and_reports_active_units():
    g = torch.Generator().manual_seed(0)
    dirs = torch.randn(16, 64, generator=g, dtype=torch.float64)
    dirs = dirs / dirs.norm(dim=1, keepdim=True)
    steps = list(range(10, 160, 10))
    rows, pts = {}, {}
    for m in range(16):
        v = torch.zeros(3, dtype=torch.float64)
        v[0] = 1.0
        snaps = [{"w": s(t) * torch.outer(dirs[m], v)} for t in steps]
        pts[f"m{m}"] = trajectory(steps, snaps, {"w": torch.zeros(64, 3, dtype=torch.float64)}, 50)["w"]
    rows = training_rows(pts, 1)
    fit = fit_predictor(rows[("u", 64)], kind="mlp", lr=1e-3, epochs=1000, seed=0)
    assert fit.loss < 0.05 * fit.first_loss
    for name, p in pts.items():
        with torch.no_grad():
            pred = fit.predictor(p[-1].glob.u.T.float(), p[-1].local.u.T.float())[0].double()
        assert float(pred @ p[-1].glob.u[:, 0] / pred.norm()) > 0.95, name
    sig = fit_predictor(rows[("sigma", 1)], kind="mlp", lr=1e-3, epochs=200, seed=0)
    assert math.isfinite(sig.loss) and 0.0 <= sig.active <= 1.0


def test_mlp_fit_is_deterministic_for_a_seed():
    pts = synthetic()
    rows = training_rows(pts, 1)[("u", 4)]
    a, b = (fit_predictor(rows, epochs=20, seed=3) for _ in range(2))
    assert a.loss == b.loss


class LawContext:
    """Drives a callback through a trajectory with a known law, as the loop would (no model needed)."""

    def __init__(self, law=s):
        self.law, self.step, self.written = law, -1, None

    def read_weights(self, kind="merged"):
        return {"w": weights(self.step + 1, self.law).float()}

    def write_weights(self, w):
        self.written = w

    def validate(self, prompts):  # the closer to where the law goes 50 steps on, the better
        return {"greedy_accuracy": -float((self.written["w"].double() - weights(200, self.law)).norm())}

    def full_sync(self):
        return {"sync/parity_max_diff": 0.0}


def drive(callback, law=s) -> torch.Tensor:
    from rlpost.config import LearnerConfig

    callback.check(200, LearnerConfig(update="full"))
    ctx = LawContext(law)
    callback.on_start(ctx)
    for step in range(150):
        ctx.step = step
        callback.after_step(ctx)
    return ctx.written["w"].double()


def test_the_next_callback_jumps_to_where_a_saturating_law_goes():
    """Through the callback: captured snapshots, predictors, write-back of W_T + c * prediction."""
    from rlpost.callbacks.linear_extrapolation import LinearExtrapolation
    from rlpost.callbacks.next import NExt

    kw = dict(interval=10, observe=150, horizon=50, coef=1.0, eval_jump=False)
    assert torch.allclose(drive(NExt(**kw, predictor="affine")), weights(200), atol=1e-5)
    linear = drive(LinearExtrapolation(**kw))
    assert float(U_STAR @ (linear - W0) @ V_STAR) == pytest.approx(1.0773601, abs=1e-5)  # overshoots s(200) = 0.8647
    two = drive(NExt(**{**kw, "coef": 2.0}, predictor="affine"))
    assert float(U_STAR @ (two - W0) @ V_STAR) == pytest.approx(s(150) + 0.1755898, abs=1e-5)


def test_a_coefficient_grid_is_scored_and_the_best_kept():
    from rlpost.callbacks.next import NExt

    kw = dict(interval=10, observe=150, horizon=50, eval_jump=False, predictor="affine")
    assert torch.allclose(drive(NExt(**kw, coef=[0.5, 1.0, 2.0, 3.0])), weights(200), atol=1e-5)
    with pytest.raises(ValueError, match="coef must be > 0"):
        NExt(**kw, coef=[-1.0, 1.0])


def test_a_trajectory_that_never_moved_jumps_nowhere():
    from rlpost.callbacks.next import NExt

    cb = NExt(interval=10, observe=150, horizon=50, coef=1.0, eval_jump=False)
    ctx = LawContext(law=lambda t: 0.0)
    cb.check(200, __import__("rlpost.config", fromlist=["LearnerConfig"]).LearnerConfig(update="full"))
    cb.on_start(ctx)
    for step in range(150):
        ctx.step = step
        metrics = cb.after_step(ctx)
    assert ctx.written == {} and metrics["next/groups"] == 0 and metrics["next/matrices"] == 0


def test_a_changed_snapshot_schedule_is_refused_on_resume():
    from rlpost.callbacks.next import NExt
    from rlpost.config import ConfigError, LearnerConfig

    a, b = NExt(interval=10, observe=150, horizon=50), NExt(interval=5, observe=150, horizon=50)
    for cb in (a, b):
        cb.check(200, LearnerConfig(update="full"))
    with pytest.raises(ConfigError, match=r"interval=10 \(this run: 5\)"):
        b.load_state_dict(a.state_dict())
