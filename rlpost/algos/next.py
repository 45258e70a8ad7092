"""NExt (nonlinear extrapolation of low-rank training trajectories) and its linear baseline: the
pure parts, on tensors, unit-testable without a model. Spec: dynamic_weighting_and_next.md part B.

A trajectory is one snapshot per matrix every ``interval`` steps up to ``observe`` (T_obs). A
snapshot is either LoRA factors ``(A [r, in], B [out, r], scale)`` (the delta from the base is
``scale * B @ A``) or a dense effective weight. For every snapshot step t, three deltas:

    global G_t = W_t - W_0      local L_t = W_t - W_{t - interval}      target T_t = W_{t + H} - W_t

each reduced to its top singular triplets (sigma, u, v) with a fixed sign. A predictor per vector
length maps (global, local) components to target components; at T_obs it predicts the next H
steps' movement, rebuilt as sigma * u v^T (u, v renormalised), and the caller writes
W_T + c * that back.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Union

import torch
from torch import nn

LoRAFactors = tuple[torch.Tensor, torch.Tensor, float]  # A [r, in], B [out, r], scale
Snapshot = Union[LoRAFactors, torch.Tensor]  # LoRA factors, or a dense effective weight
EPS = 1e-12


# ---------------------------------------------------------------------- rank-k components


@dataclass
class Components:
    """Top-k singular triplets of one delta: sigma [k], u [out, k], v [in, k] (unit columns)."""

    sigma: torch.Tensor
    u: torch.Tensor
    v: torch.Tensor

    def dense(self) -> torch.Tensor:
        return (self.u * self.sigma) @ self.v.T


def canonical_sign(u: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Flip each (u, v) column pair so that u's entry of largest magnitude (the first on ties) is
    positive: an SVD triplet is defined only up to that flip, and regression targets must not be."""
    idx = torch.argmax(u.abs(), dim=0)  # torch returns the first maximal index
    sign = torch.sign(u[idx, torch.arange(u.shape[1])])
    sign[sign == 0] = 1.0
    return u * sign, v * sign


def _top(U: torch.Tensor, S: torch.Tensor, V: torch.Tensor, k: int) -> Components:
    u, v = canonical_sign(U[:, :k], V[:, :k])
    return Components(S[:k].clone(), u, v)


def top_components(delta: torch.Tensor | tuple[torch.Tensor, torch.Tensor], k: int = 1) -> Components:
    """Top-k triplets of a dense delta [out, in], or of a factored one ``(X [out, m], Y [m, in])``
    through thin QRs and the SVD of the small m x m core (spec B.2.2): the same result, cheaply."""
    if isinstance(delta, torch.Tensor):
        U, S, Vh = torch.linalg.svd(delta.double(), full_matrices=False)
        return _top(U, S, Vh.T, k)
    X, Y = (t.double() for t in delta)
    qx, rx = torch.linalg.qr(X)
    qy, ry = torch.linalg.qr(Y.T)
    Uc, S, Vch = torch.linalg.svd(rx @ ry.T)
    return _top(qx @ Uc, S, qy @ Vch.T, k)


def delta(new: Snapshot, old: Snapshot | None) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """``new - old`` (old None: the base, where a LoRA product is zero), factored when both are LoRA
    factors: ``s_n B_n A_n - s_o B_o A_o = [s_n B_n, -s_o B_o] @ [A_n; A_o]``, rank <= 2r."""
    if isinstance(new, torch.Tensor):
        if old is None:
            raise ValueError("a dense snapshot needs the dense starting weight to take its delta")
        return new.double() - old.double()
    a, b, s = new
    if old is None:
        return (s * b.double(), a.double())
    a0, b0, s0 = old
    return (torch.cat([s * b.double(), -s0 * b0.double()], 1), torch.cat([a.double(), a0.double()], 0))


def dense_delta(new: Snapshot, old: Snapshot | None) -> torch.Tensor:
    """``new - old`` as one dense matrix (float64)."""
    d = delta(new, old)
    return d if isinstance(d, torch.Tensor) else d[0] @ d[1]


# ---------------------------------------------------------------------- trajectory features


@dataclass
class Point:
    """One matrix at one snapshot step: its global, local and (when t + H <= T_obs) target components."""

    step: int
    glob: Components
    local: Components
    target: Components | None


def trajectory(steps: list[int], snaps: list[dict[str, Snapshot]], origin: dict[str, Snapshot | None],
               horizon: int, k: int = 1) -> dict[str, list[Point]]:
    """Per matrix, the points of the trajectory (spec B.2). ``steps`` are evenly spaced snapshot steps;
    matrices whose global delta at the last snapshot is zero are left out (spec B.8)."""
    at = {t: i for i, t in enumerate(steps)}
    out: dict[str, list[Point]] = {}
    for name in snaps[-1]:
        last = top_components(delta(snaps[-1][name], origin.get(name)), k)
        if float(last.sigma[0]) <= EPS:
            continue
        points = []
        for i, t in enumerate(steps):
            prev = snaps[i - 1][name] if i else origin.get(name)
            ahead = at.get(t + horizon)
            points.append(Point(
                t, top_components(delta(snaps[i][name], origin.get(name)), k),
                top_components(delta(snaps[i][name], prev), k),
                top_components(delta(snaps[ahead][name], snaps[i][name]), k) if ahead is not None else None,
            ))
        out[name] = points
    return out


def group_key(part: str, c: Components) -> tuple[str, int]:
    """Predictor groups (spec B.3.1): u vectors by their length, v vectors by theirs, one sigma group."""
    return (part, 1 if part == "sigma" else getattr(c, part).shape[0])


def _vec(c: Components, part: str, j: int) -> torch.Tensor:
    return c.sigma[j : j + 1] if part == "sigma" else getattr(c, part)[:, j]


@dataclass
class Rows:
    """A group's regression rows: per training step, the stacked inputs and targets of its matrices."""

    glob: list[torch.Tensor]  # per step [rows, d]
    local: list[torch.Tensor]
    target: list[torch.Tensor]


def training_rows(points: dict[str, list[Point]], k: int) -> dict[tuple[str, int], Rows]:
    """Every (matrix, component) at every step that has a target, grouped as the predictors are."""
    groups: dict[tuple[str, int], dict[int, list[tuple]]] = {}
    for name, pts in points.items():
        for p in pts:
            if p.target is None:
                continue
            for part in ("u", "v", "sigma"):
                for j in range(k):
                    rows = groups.setdefault(group_key(part, p.glob), {}).setdefault(p.step, [])
                    rows.append((_vec(p.glob, part, j), _vec(p.local, part, j), _vec(p.target, part, j)))
    return {
        key: Rows(*[[torch.stack([r[i] for r in by_step[t]]).float() for t in sorted(by_step)] for i in range(3)])
        for key, by_step in groups.items()
    }


# ---------------------------------------------------------------------- predictors


class MLPPredictor(nn.Module):
    """Spec B.3.2: a global and a local branch (linear d->w, w->d, ReLU, d->w, w->d) and a combiner on
    their concatenation (2d->w, w->2d, ReLU, 2d->w, w->d). The ReLUs act on width d and 2d, not w."""

    def __init__(self, d: int, width: int = 256) -> None:
        super().__init__()

        def branch(i: int, o: int) -> nn.Sequential:
            return nn.Sequential(nn.Linear(i, width), nn.Linear(width, i), nn.ReLU(), nn.Linear(i, width), nn.Linear(width, o))

        self.glob, self.local, self.combine = branch(d, d), branch(d, d), branch(2 * d, d)

    def forward(self, g: torch.Tensor, l: torch.Tensor) -> torch.Tensor:  # noqa: E741
        return self.combine(torch.cat([self.glob(g), self.local(l)], -1))

    @torch.no_grad()
    def active_fraction(self, g: torch.Tensor, l: torch.Tensor) -> float:
        """Share of ReLU units positive for at least one input row (0: the network outputs a constant)."""
        hg, hl = self.glob[:2](g), self.local[:2](l)
        hc = self.combine[:2](torch.cat([self.glob(g), self.local(l)], -1))
        units = torch.cat([(h > 0).any(0) for h in (hg, hl, hc)])
        return float(units.float().mean())


class AffinePredictor(nn.Module):
    """target = M [g; l; 1], fitted in closed form (minimum-norm least squares): no units to die."""

    def __init__(self, d: int) -> None:
        super().__init__()
        self.register_buffer("M", torch.zeros(2 * d + 1, d, dtype=torch.float64))

    def forward(self, g: torch.Tensor, l: torch.Tensor) -> torch.Tensor:  # noqa: E741
        x = torch.cat([g.double(), l.double(), torch.ones(g.shape[0], 1, dtype=torch.float64)], -1)
        return (x @ self.M).to(g.dtype)

    def fit(self, rows: Rows) -> None:
        g, l, t = (torch.cat(r).double() for r in (rows.glob, rows.local, rows.target))
        x = torch.cat([g, l, torch.ones(g.shape[0], 1, dtype=torch.float64)], -1)
        self.M = torch.linalg.pinv(x) @ t  # minimum norm: the features may be collinear


@dataclass
class Fit:
    predictor: nn.Module
    first_loss: float
    loss: float  # L1 summed over a step's rows, averaged over steps (spec B.3.3)
    active: float  # ReLU units alive (1.0 for the affine predictor)
    retries: int = 0


def l1_loss(model: nn.Module, rows: Rows) -> torch.Tensor:
    return sum((model(g, l) - t).abs().sum() for g, l, t in zip(rows.glob, rows.local, rows.target)) / len(rows.glob)


def fit_predictor(rows: Rows, kind: str = "mlp", width: int = 256, epochs: int = 1000, lr: float = 2e-5,
                  min_lr_ratio: float = 0.1, seed: int = 0, retries: int = 2) -> Fit:
    """One group's predictor (spec B.3.3): AdamW on the full batch, one step per epoch, cosine to
    ``min_lr_ratio * lr``. An MLP whose ReLU units all died is re-initialised and retrained (our
    proposal, spec B.3.2), at most ``retries`` times."""
    d = rows.glob[0].shape[1]
    if kind == "affine":
        model = AffinePredictor(d)
        first = float(l1_loss(model, rows))
        model.fit(rows)
        return Fit(model, first, float(l1_loss(model, rows)), 1.0)
    if kind != "mlp":
        raise ValueError(f"predictor must be 'mlp' or 'affine', got {kind!r}")
    g, l = torch.cat(rows.glob), torch.cat(rows.local)  # noqa: E741
    for attempt in range(retries + 1):
        gen = torch.Generator().manual_seed(seed * 1000 + attempt)
        model = MLPPredictor(d, width)
        with torch.no_grad():
            for layer in model.modules():  # torch's default Linear init (bounds 1/sqrt(fan_in)), from our own generator
                if isinstance(layer, nn.Linear):
                    bound = 1.0 / math.sqrt(layer.in_features)
                    layer.weight.uniform_(-bound, bound, generator=gen)
                    layer.bias.uniform_(-bound, bound, generator=gen)
        opt = torch.optim.AdamW(model.parameters(), lr=lr)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(epochs, 1), eta_min=lr * min_lr_ratio)
        first = None
        for _ in range(epochs):
            opt.zero_grad()
            loss = l1_loss(model, rows)
            first = float(loss.detach()) if first is None else first
            loss.backward()
            opt.step()
            sched.step()
        active = model.active_fraction(g, l)
        if active > 0 or attempt == retries:
            with torch.no_grad():
                final = float(l1_loss(model, rows))
            return Fit(model, first if first is not None else final, final, active, attempt)
    raise AssertionError("unreachable")


# ---------------------------------------------------------------------- prediction and rebuild


def rebuild(sigma: torch.Tensor, u: torch.Tensor, v: torch.Tensor, clamp_negative: bool = False) -> tuple[torch.Tensor | None, int]:
    """sum_j sigma_j (u_j / |u_j|)(v_j / |v_j|)^T (spec B.4 step 3); None when every direction is ~0.
    Returns the update and how many sigma_j were negative."""
    out, negative = None, 0
    for j in range(sigma.shape[0]):
        s, nu, nv = float(sigma[j]), float(u[:, j].norm()), float(v[:, j].norm())
        if nu <= 1e-8 or nv <= 1e-8:
            continue
        negative += s < 0
        if s < 0 and clamp_negative:
            continue
        term = s * torch.outer(u[:, j] / nu, v[:, j] / nv)
        out = term if out is None else out + term
    return out, negative


def predict_updates(points: dict[str, list[Point]], fits: dict[tuple[str, int], Fit], k: int,
                    clamp_negative: bool = False) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
    """The predicted next-H-steps movement of every matrix from its components at the last snapshot."""
    updates: dict[str, torch.Tensor] = {}
    negative = skipped = 0
    for name, pts in points.items():
        last = pts[-1]
        pred = {}
        for part in ("u", "v", "sigma"):
            fit = fits[group_key(part, last.glob)]
            g = torch.stack([_vec(last.glob, part, j) for j in range(k)]).float()
            l = torch.stack([_vec(last.local, part, j) for j in range(k)]).float()  # noqa: E741
            with torch.no_grad():
                pred[part] = fit.predictor(g, l).double()
        update, neg = rebuild(pred["sigma"][:, 0], pred["u"].T, pred["v"].T, clamp_negative)
        negative += neg
        if update is None:
            skipped += 1
            continue
        updates[name] = update
    return updates, {"negative_sigma": float(negative), "skipped": float(skipped)}


# ---------------------------------------------------------------------- linear baseline


def linear_fit(steps: list[float], values: list[float]) -> tuple[float, float]:
    """Least-squares a + b t."""
    t = torch.tensor(steps, dtype=torch.float64)
    y = torch.tensor(values, dtype=torch.float64)
    x = torch.stack([torch.ones_like(t), t], 1)
    a, b = torch.linalg.lstsq(x, y[:, None]).solution[:, 0].tolist()
    return a, b


def linear_updates(steps: list[int], snaps: list[dict[str, Snapshot]], origin: dict[str, Snapshot | None],
                   ahead: float) -> dict[str, torch.Tensor]:
    """Spec B.6: per matrix, (u, v) of the last global delta; coefficients a_t = u^T G_t v over the
    snapshots; a least-squares line a + b t; the update (a + b (T + ahead) - a_T) u v^T."""
    out = {}
    for name in snaps[-1]:
        last = top_components(delta(snaps[-1][name], origin.get(name)), 1)
        if float(last.sigma[0]) <= EPS:
            continue
        u, v = last.u[:, 0], last.v[:, 0]
        coefs = []
        for snap in snaps:
            d = delta(snap[name], origin.get(name))
            coefs.append(float(u @ d @ v) if isinstance(d, torch.Tensor) else float((u @ d[0]) @ (d[1] @ v)))
        a, b = linear_fit([float(t) for t in steps], coefs)
        out[name] = (a + b * (steps[-1] + ahead) - coefs[-1]) * torch.outer(u, v)
    return out
