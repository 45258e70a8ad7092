"""Knapsack RL (Li et al., 2025): split a fixed rollout budget over a step's prompts by their
estimated success rates, so that rollouts go where a group is likely to have both outcomes.

Pure functions; the sampler that uses them is ``rlpost/rollout/knapsack.py``. Spec and hand-checked
numbers: ``shared/specs/unlikeliness_and_knapsack.md`` part 2.
"""
from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field
from typing import Any, Hashable, NamedTuple, Sequence


def info_gain(p: float) -> float:
    """``p (1-p)^2``: the paper's approximation of the gain in success probability from one update."""
    return p * (1.0 - p) ** 2


def nonzero_prob(n: int, p: float) -> float:
    """Probability that ``n`` rollouts hold at least one success and one failure."""
    return 1.0 - p**n - (1.0 - p) ** n


def task_value(n: int, p: float) -> float:
    """``V(N, p) = P_nz(N, p) * IG(p)``; 0 at p in {0, 1} (defined, not left to 0**N arithmetic)."""
    if p <= 0.0 or p >= 1.0:
        return 0.0
    return nonzero_prob(n, p) * info_gain(p)


def marginal_gain(n: int, p: float) -> float:
    """``V(n+1, p) - V(n, p) = IG(p) [p^n (1-p) + (1-p)^n p]``, decreasing in n for 0 < p < 1."""
    if p <= 0.0 or p >= 1.0:
        return 0.0
    return info_gain(p) * (p**n * (1.0 - p) + (1.0 - p) ** n * p)


def rollout_cost(p: float, estimate: str = "probability", alpha: float = 0.9) -> float:
    """Rollouts needed to see both outcomes: with probability ``alpha`` (``probability``) or on
    average (``expectation``). Infinite at p in {0, 1}."""
    if p <= 0.0 or p >= 1.0:
        return math.inf
    if estimate == "probability":
        return math.log(1.0 - alpha) / math.log(max(p, 1.0 - p))
    if estimate == "expectation":
        return 1.0 / p + 1.0 / (1.0 - p) - 1.0
    raise ValueError(f"cost_estimate must be 'probability' or 'expectation', got {estimate!r}")


class Estimate(NamedTuple):
    valid: bool  # enough history to trust p_hat
    p_hat: float
    count: int  # outcomes ever recorded


@dataclass
class PromptHistory:
    """Success/failure outcomes per prompt (any hashable key) across visits (kept in checkpoints).

    Only what the estimator can read is kept: the last visit whole, and older outcomes up to ``window``.
    """

    min_history: int = 8
    window: int = 16
    epoch_estimation: bool = True
    robust_estimation: bool = True
    visits: dict[Hashable, list[list[int]]] = field(default_factory=dict)  # prompt -> visits, oldest first
    counts: dict[Hashable, int] = field(default_factory=dict)

    def update(self, prompt: Hashable, outcomes: list[int]) -> None:
        if not outcomes:
            return
        visits = self.visits.setdefault(prompt, [])
        visits.append([int(o) for o in outcomes])
        self.counts[prompt] = self.counts.get(prompt, 0) + len(outcomes)
        # Drop visits no estimate can reach: older than the last one and beyond the window.
        kept, seen = [], 0
        for i, v in enumerate(reversed(visits)):
            if i > 0 and seen >= self.window:
                break
            kept.append(v)
            seen += len(v)
        self.visits[prompt] = kept[::-1]

    def recent(self, prompt: Hashable) -> list[int]:
        """The newest ``window`` outcomes, across visits."""
        out: list[int] = []
        for v in reversed(self.visits.get(prompt, [])):
            out += v[::-1]
            if len(out) >= self.window:
                break
        return out[: self.window]

    def estimate(self, prompt: Hashable) -> Estimate:
        count = self.counts.get(prompt, 0)
        if count < max(1, self.min_history):
            return Estimate(False, 0.0, count)
        last = self.visits[prompt][-1]
        if self.epoch_estimation and not (self.robust_estimation and len(last) < self.window):
            outcomes = last
        else:
            outcomes = self.recent(prompt)
        return Estimate(True, sum(outcomes) / len(outcomes), count)

    def state_dict(self) -> dict[str, Any]:
        return {"visits": {k: [list(v) for v in vs] for k, vs in self.visits.items()}, "counts": dict(self.counts)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.visits = {k: [list(v) for v in vs] for k, vs in state["visits"].items()}
        self.counts = {k: int(c) for k, c in state["counts"].items()}


def solve_greedy(ps: list[float], n_low: int, n_up: int, extra: int) -> list[int]:
    """Maximise ``sum V(N_i, p_i)`` with ``n_low <= N_i <= n_up`` and ``sum N_i <= n_low len(ps) + extra``:
    one rollout at a time to the largest marginal gain (ties: lower index). Exact because every
    ``V(., p)`` is concave. Stops early when every prompt is at ``n_up``."""
    alloc = [n_low] * len(ps)
    heap = [(-marginal_gain(n_low, p), i) for i, p in enumerate(ps) if n_low < n_up]
    heapq.heapify(heap)
    for _ in range(extra):
        if not heap:
            break
        _, i = heapq.heappop(heap)
        alloc[i] += 1
        if alloc[i] < n_up:
            heapq.heappush(heap, (-marginal_gain(alloc[i], ps[i]), i))
    return alloc


def solve_dp(ps: list[float], n_low: int, n_up: int, extra: int) -> list[int]:
    """The same problem by dynamic programming over (prompt, extra rollouts used): the reference's
    exact solver, kept to check the greedy. Uses the largest capacity the caps allow."""
    span = n_up - n_low
    extra = min(extra, span * len(ps))
    neg = -math.inf
    best = [0.0] + [neg] * extra  # best[c]: value with exactly c extra rollouts over prompts so far
    choice: list[list[int]] = []
    for p in ps:
        vals = [task_value(n_low + k, p) for k in range(span + 1)]
        new, pick = [neg] * (extra + 1), [0] * (extra + 1)
        for c in range(extra + 1):
            for k in range(min(span, c) + 1):
                if best[c - k] > neg and best[c - k] + vals[k] > new[c] + 1e-15:
                    new[c], pick[c] = best[c - k] + vals[k], k
        best = new
        choice.append(pick)
    alloc, c = [0] * len(ps), extra
    for i in range(len(ps) - 1, -1, -1):
        alloc[i] = n_low + choice[i][c]
        c -= choice[i][c]
    return alloc


SOLVERS = {"greedy": solve_greedy, "dp": solve_dp}


def allocate_rollouts(
    stats: list[Estimate], n_default: int, total_budget: int | None = None, n_low: int = 2, n_up: int = 128,
    n_pos: int = 2, n_neg: int = 2, alpha: float = 0.9, cost_estimate: str = "probability", fallback: bool = True,
    solver: str = "greedy", cap_surplus: bool = False,
) -> tuple[list[int], dict[str, float]]:
    """Rollouts per prompt, summing exactly to ``total_budget`` (default ``n_default * len(stats)``).

    New prompts get ``n_default``, always-solved ``n_pos``, never-solved ``n_neg``, the rest (effective)
    ``n_low``; with ``fallback`` the budget the effective prompts cannot use (their cost estimate,
    capped at ``n_up``) goes to the never-solved ones; the optimiser spreads what is left over the
    effective prompts. Raises ValueError when the base allocation exceeds the budget.

    The reference hands the surplus out past ``n_up`` (one never-solved prompt in a batch of solved ones
    can get most of the budget) and spreads what capped effective prompts cannot take over them anyway;
    ``cap_surplus`` (ours, the spec's suggestion) stops every share at ``n_up``, gives the surplus that
    does not fit back to the optimiser, and spreads only what no prompt can take over all.
    """
    m = len(stats)
    budget = n_default * m if total_budget is None else total_budget
    cls = ["new" if not s.valid else "solved" if s.p_hat >= 1.0 else "unsolved" if s.p_hat <= 0.0 else "effective" for s in stats]
    base_of = {"new": n_default, "solved": n_pos, "unsolved": n_neg, "effective": n_low}
    alloc = [base_of[c] for c in cls]
    rest = budget - sum(alloc)
    if rest < 0:
        raise ValueError(f"a budget of {budget} rollouts cannot give {m} prompts their minimum ({sum(alloc)} in all)")
    info = {**{f"prompts_{c}": float(cls.count(c)) for c in base_of}, "surplus": 0.0, "optimised": 0.0}
    if m == 0:
        return alloc, info
    eff = [i for i, c in enumerate(cls) if c == "effective"]
    # the surplus goes to the never-solved prompts, or to the other non-effective ones
    recipients = [i for i, c in enumerate(cls) if c == "unsolved"] or [i for i, c in enumerate(cls) if c != "effective"]
    if not eff:
        # Nothing informative to optimise: the never-solved prompts may still surprise, else spread evenly.
        if fallback and "unsolved" in cls:
            alloc, info["surplus"] = _hand_out(alloc, recipients, rest, n_up if cap_surplus else None), float(rest)
        else:
            alloc = _give([0] * m, range(m), budget)[0]
        return alloc, {**info, "max": float(max(alloc)), "min": float(min(alloc))}
    to_opt = rest
    if fallback and recipients:
        # Parity with the reference: total need is compared with the *extra* budget (n_low not subtracted).
        need = sum(math.floor(min(n_up, rollout_cost(stats[i].p_hat, cost_estimate, alpha))) for i in eff)
        if need < rest:
            surplus = rest - need
            alloc, back = _give(alloc, recipients, surplus, n_up if cap_surplus else None)
            to_opt, info["surplus"] = need + back, float(surplus - back)
    chosen = SOLVERS[solver]([stats[i].p_hat for i in eff], n_low, n_up, to_opt)
    for i, n in zip(eff, chosen):
        alloc[i] = n
    left = budget - sum(alloc)  # every effective prompt is at n_up
    if left:
        alloc = _hand_out(alloc, range(m), left, n_up) if cap_surplus else _give(alloc, eff, left)[0]
    info["optimised"] = float(to_opt)
    return alloc, {**info, "max": float(max(alloc)), "min": float(min(alloc))}


def _hand_out(alloc: list[int], to: Sequence[int], amount: int, cap: int | None) -> list[int]:
    """``amount`` over ``to`` (never above ``cap``), then what did not fit over every prompt."""
    out, rest = _give(alloc, to, amount, cap)
    return _give(out, range(len(out)), rest)[0] if rest else out


def _give(alloc: list[int], to: Sequence[int], amount: int, cap: int | None = None) -> tuple[list[int], int]:
    """``amount`` one at a time round robin over ``to`` (evenly, the first ones get the remainder), never
    above ``cap``; returns the new allocation and what did not fit."""
    out = list(alloc)
    room = [i for i in to if cap is None or out[i] < cap]
    while amount and room:
        if cap is None:  # no cap: whole rounds at once
            q, r = divmod(amount, len(room))
            for j, i in enumerate(room):
                out[i] += q + (j < r)
            return out, 0
        for i in list(room):
            if not amount:
                break
            out[i] += 1
            amount -= 1
            if out[i] >= cap:
                room.remove(i)
    return out, amount
