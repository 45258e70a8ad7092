"""Rerankers you call: ``rerank(query, docs) -> [Scored]``, best first, like sentence-transformers'
``CrossEncoder.rank`` and the ``rerankers`` library (a plain string list gets docids "0".."n-1").

- ``ERankReranker``: pointwise. Each (query, document) prompt ends in ERank's answer prefix and one forward
  pass (the LM head on the last position only) gives the distribution over the score tokens 0..10; the
  score is its expectation (a two-token "10" costs one more step, on the KV cache, after "1").
- ``GroupRankReranker``: groupwise. Candidates are shuffled into groups of ``group_size``, each group is one
  generation whose JSON scores are read leniently, and a document's score is its mean over ``passes``
  (``placement="rotate"``: passes that move every document through every place in its group's prompt).
  ``direct=True`` skips the generation: one forward over the answer with empty reasoning reads each member's
  expected score, as ERank does (for models trained without reasoning, e.g. with SFT's ranking term); with
  ``score_at="block"`` the forward covers the prompt only and reads member k's score at its block's last
  token (prompts.SCORE_AT)."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from rlpost.algos.rank_loss import digit_values, expected_scores
from rlpost.config import ConfigError
from rlpost.ranking.parsing import parse_grouprank_lenient
from rlpost.ranking.prompts import (
    ERANK_DIRECT, GROUPRANK_SYSTEM, SCORE_AT, erank_prompt, grouprank_block_ends, grouprank_direct, grouprank_prompt,
    render, render_text, unknown_layout,
)
from rlpost.ranking.scores import PLACEMENTS, groups, merge_passes, rotated_groups
from rlpost.ranking.slots import digit_ids, mark_positions, score_slots

Doc = str | dict  # a text, or {"docid", "text", "score" (first stage, optional)}


@dataclass
class Scored:
    docid: str
    score: float  # higher is better
    rank: int  # 1-based
    details: dict[str, Any] = field(default_factory=dict)


def as_candidates(docs: Sequence[Doc]) -> list[dict]:
    """Candidates with docids (positions for plain strings) and texts; ConfigError for an empty list."""
    if not docs:
        raise ConfigError("rerank: the candidate list is empty")
    return [{"docid": str(i), "text": d} if isinstance(d, str) else {"docid": str(d["docid"]), "text": d["text"]} for i, d in enumerate(docs)]


def ranked(candidates: list[dict], scores: Sequence[float], details: Sequence[dict], top_k: int | None) -> list[Scored]:
    """Best first; ties keep the candidates' (first-stage) order."""
    order = sorted(range(len(candidates)), key=lambda i: -scores[i])
    out = [Scored(candidates[i]["docid"], float(scores[i]), r, details[i]) for r, i in enumerate(order, 1)]
    return out[:top_k] if top_k else out


class Reranker:
    """``rerank_batch(items, top_k, qids)`` is each reranker's own; ``rerank`` is one query of it. Documents
    longer than ``max_doc_tokens`` (None: no limit) are cut before they go into a prompt."""

    tokenizer: Any
    max_doc_tokens: int | None = None

    def truncate(self, text: str) -> str:
        if self.max_doc_tokens is None:
            return text
        ids = self.tokenizer(text, add_special_tokens=False).input_ids
        return text if len(ids) <= self.max_doc_tokens else self.tokenizer.decode(ids[: self.max_doc_tokens])

    def rerank_batch(self, items: Sequence[tuple[str, Sequence[Doc]]], top_k: int | None = None,
                     qids: Sequence[str] | None = None) -> list[list[Scored]]:
        raise NotImplementedError

    def rerank(self, query: str, docs: Sequence[Doc], top_k: int | None = None, qid: str | None = None) -> list[Scored]:
        return self.rerank_batch([(query, docs)], top_k, [qid] if qid is not None else None)[0]

    def prompts_per_query(self, n_docs: int) -> int:
        """Prompts one query of ``n_docs`` candidates costs (callers size their batches of queries by it)."""
        return n_docs


class ERankReranker(Reranker):
    def __init__(
        self, model_path: str, dtype: str = "float32", instruction: str = "semantic", batch_size: int = 16,
        max_doc_tokens: int | None = 256, threads: int | None = None, device: str = "cpu", layout: str = "query-first",
    ) -> None:
        from rlpost.models.loading import load_model, load_tokenizer

        if problem := unknown_layout(layout):
            raise ConfigError(f"erank {problem}; use the one the model was trained with")
        if threads:
            torch.set_num_threads(threads)
        self.model = load_model(model_path, dtype, device).eval()
        self.tokenizer = load_tokenizer(model_path)
        self.instruction, self.layout, self.batch_size, self.max_doc_tokens = instruction, layout, batch_size, max_doc_tokens
        self.digits = [self._single_token(str(d)) for d in range(10)]
        ten = self.tokenizer("10", add_special_tokens=False).input_ids
        self.ten = ten[0] if len(ten) == 1 else None  # None: "1" then "0"

    def _single_token(self, text: str) -> int:
        ids = self.tokenizer(text, add_special_tokens=False).input_ids
        if len(ids) != 1:
            raise ConfigError(f"ERank scoring needs each digit as one token; this tokenizer splits {text!r} into {ids}")
        return ids[0]

    def prompt(self, query: str, document: str) -> list[int]:
        """Token ids of one pair's prompt, ending in the answer prefix the score follows."""
        return render(self.tokenizer, erank_prompt(query, self.truncate(document), self.instruction, self.layout),
                      answer_prefix=ERANK_DIRECT)

    def distributions(self, pairs: Sequence[tuple[str, str]]) -> torch.Tensor:
        """P(score = 0..10) [B, 11] after each (query, document) prompt, normalised over the 11 scores."""
        from rlpost.models.forward import next_token_logprobs

        prompts = [self.prompt(q, d) for q, d in pairs]
        then = self.digits[1] if self.ten is None else None  # "10" is "1" then "0": what follows "1" splits P("1")
        first, after_one = next_token_logprobs(self.model, prompts, self.tokenizer.pad_token_id, self.batch_size, then)
        probs = first.exp()
        p = probs[:, self.digits]
        if self.ten is not None:
            p10 = probs[:, self.ten]
        else:
            then_zero = after_one.exp()[:, self.digits[0]]
            p10 = p[:, 1] * then_zero
            p = p.clone()
            p[:, 1] = p[:, 1] * (1 - then_zero)
        dist = torch.cat([p, p10[:, None]], dim=1)
        return dist / dist.sum(dim=1, keepdim=True).clamp_min(1e-30)

    def rerank_batch(self, items: Sequence[tuple[str, Sequence[Doc]]], top_k: int | None = None,
                     qids: Sequence[str] | None = None) -> list[list[Scored]]:
        """``qids`` are unused: a pair's score depends on nothing else."""
        cands = [as_candidates(docs) for _, docs in items]
        pairs = [(q, c["text"]) for (q, _), cs in zip(items, cands) for c in cs]
        dist = self.distributions(pairs)
        expected = (dist * torch.arange(11, dtype=dist.dtype)).sum(dim=1).tolist()
        best = dist.argmax(dim=1).tolist()
        out, at = [], 0
        for cs in cands:
            rows = range(at, at + len(cs))
            details = [{"argmax": best[r], "p": float(dist[r, best[r]])} for r in rows]
            out.append(ranked(cs, [expected[r] for r in rows], details, top_k))
            at += len(cs)
        return out


class GroupRankReranker(Reranker):
    def __init__(
        self, model_path: str, dtype: str = "float32", group_size: int = 20, passes: int = 1, seed: int = 0,
        temperature: float = 0.3, top_p: float = 0.8, max_new_tokens: int = 512, batch_size: int = 8, threads: int | None = None,
        max_doc_tokens: int | None = None, device: str = "cpu", direct: bool = False, layout: str = "query-first",
        echo_words: int = 0, score_at: str = "answer", placement: str = "shuffle",
    ) -> None:
        from rlpost.models.loading import load_model, load_tokenizer
        from rlpost.rollout.hf_engine import HFEngine

        if group_size < 1 or passes < 1 or echo_words < 0:
            raise ConfigError(f"group_size and passes must be at least 1 and echo_words at least 0, got {group_size}, {passes} and {echo_words}")
        if problem := unknown_layout(layout):
            raise ConfigError(f"grouprank {problem}; use the one the model was trained with")
        if score_at not in SCORE_AT:
            raise ConfigError(f"grouprank score_at {score_at!r} is unknown (known: {', '.join(SCORE_AT)})")
        if placement not in PLACEMENTS:
            raise ConfigError(f"grouprank placement {placement!r} is unknown (known: {', '.join(PLACEMENTS)})")
        if score_at == "block" and not direct:
            raise ConfigError("grouprank score_at='block' reads scores in the prompt without generating: it needs direct=True (--direct)")
        self.tokenizer = load_tokenizer(model_path)
        if direct:
            if threads:
                torch.set_num_threads(threads)
            self.model = load_model(model_path, dtype, device).eval()
            self.digits = digit_ids(self.tokenizer)
        else:
            self.engine = HFEngine(model_path, dtype, seed=seed, batch_size=batch_size, threads=threads, device=device)
        self.direct, self.batch_size, self.layout, self.echo_words, self.score_at = direct, batch_size, layout, echo_words, score_at
        self.group_size, self.passes, self.seed, self.max_doc_tokens = group_size, passes, seed, max_doc_tokens
        self.placement = placement
        self.sampling = dict(temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens)

    def prompts_per_query(self, n_docs: int) -> int:
        return -(-n_docs // self.group_size) * self.passes

    def rerank_batch(self, items: Sequence[tuple[str, Sequence[Doc]]], top_k: int | None = None,
                     qids: Sequence[str] | None = None) -> list[list[Scored]]:
        """``qids`` seed each query's shuffles (default: the items' positions). Each document's details log its
        group in every pass (``pass_groups``: the window's index), its place in that group's prompt
        (``pass_positions``, 1-based) and the score it got there (``pass_scores``, 0..10; None where the group did
        not parse), so a run's passes can be reproduced and re-merged."""
        cands = [as_candidates(docs) for _, docs in items]
        jobs = []  # (query index, pass, group docids)
        for qi, cs in enumerate(cands):
            qid = qids[qi] if qids else str(qi)
            ids = [c["docid"] for c in cs]
            jobs += [(qi, r, g) for r in range(self.passes) for g in self.pass_groups(ids, qid, r)]
        texts = [{c["docid"]: self.truncate(c["text"]) for c in cs} for cs in cands]
        members = [[texts[qi][d] for d in g] for qi, _, g in jobs]
        if self.score_at == "block":
            scored = self._block_scores([self.block_prompt(items[qi][0], m) for (qi, _, _), m in zip(jobs, members)])
        else:
            prompts = [self.prompt(items[qi][0], m) for (qi, _, _), m in zip(jobs, members)]
            scored = self._direct_scores(prompts, members) if self.direct else self._generated_scores(prompts, jobs)
        passes: list[list[dict[str, float]]] = [[] for _ in cands]
        unparsed = [0] * len(cands)
        seen: list[dict[str, dict]] = [{c["docid"]: {"pass_groups": [], "pass_positions": [], "pass_scores": []} for c in cs} for cs in cands]
        windows: dict[tuple[int, int], int] = {}
        for (qi, r, g), scores in zip(jobs, scored):
            unparsed[qi] += not scores
            passes[qi].append({g[k - 1]: v for k, v in scores.items()})
            w = windows[qi, r] = windows.get((qi, r), -1) + 1
            for k, d in enumerate(g, 1):  # the pass's groups are disjoint: one group and score (None: unparsed) each
                seen[qi][d]["pass_groups"].append(w)
                seen[qi][d]["pass_positions"].append(k)
                seen[qi][d]["pass_scores"].append(scores.get(k))
        out = []
        for qi, cs in enumerate(cands):
            merged = merge_passes(passes[qi])
            scores = [merged.get(c["docid"], -1.0) for c in cs]  # unscored: after the scored, in first-stage order
            details = [{"scored": c["docid"] in merged, "groups_unparsed": unparsed[qi], **seen[qi][c["docid"]]} for c in cs]
            out.append(ranked(cs, scores, details, top_k))
        return out

    def pass_groups(self, docids: list[str], qid: str, r: int) -> list[list[str]]:
        """Pass r's groups of a query's candidates: a fresh shuffle each pass, or with ``placement="rotate"``
        position-balanced passes (each document at every place once in ``group_size`` passes)."""
        if self.placement == "rotate":
            return rotated_groups(docids, self.group_size, r, seed=f"{self.seed}:{qid}")
        return groups(docids, self.group_size, seed=f"{self.seed}:{qid}:{r}")

    def prompt(self, query: str, members: Sequence[str]) -> list[int]:
        """Token ids of one group's prompt (documents already cut), ending where the answer starts."""
        return render(self.tokenizer, grouprank_prompt(query, members, self.layout, self.echo_words), GROUPRANK_SYSTEM)

    def block_prompt(self, query: str, members: Sequence[str]) -> tuple[list[int], list[int]]:
        """(token ids of one group's prompt, the position of each member's block's last token in it)."""
        user = grouprank_prompt(query, members, self.layout, self.echo_words)
        return mark_positions(render_text(self.tokenizer, user, GROUPRANK_SYSTEM), self.tokenizer, user,
                              grouprank_block_ends(query, members, self.layout, self.echo_words))

    def direct_answer(self, members: Sequence[str]) -> tuple[list[int], list[int]]:
        """(token ids of the zero-filled answer direct scoring feeds after a group's prompt, each member's score slot)."""
        return score_slots(grouprank_direct(members, self.echo_words), self.tokenizer, expected=len(members))

    def _generated_scores(self, prompts: list[list[int]], jobs: list) -> list[dict[int, float]]:
        """Each group's generated JSON scores, read leniently ({} when none parse)."""
        from rlpost.types import Request, SamplingParams

        completions = self.engine.generate([Request(prompt_ids=p, key=i) for i, p in enumerate(prompts)], SamplingParams(n=1, **self.sampling))
        return [parse_grouprank_lenient(c.text, len(g)) for (_, _, g), c in zip(jobs, completions)]

    @torch.no_grad()
    def _direct_scores(self, prompts: list[list[int]], members: list[list[str]]) -> list[dict[int, float]]:
        """Without generating: the answer with empty reasoning and every score 0 is fed after each prompt (its
        keys repeating the members' first words with ``echo_words``), and member k's score is the expectation
        of the digit distribution where its score is written (a leading "1" reads as 10), as ERank reads its
        one score."""
        from rlpost.models.forward import completion_logits

        out = []
        for start in range(0, len(prompts), self.batch_size):
            rows = range(start, min(start + self.batch_size, len(prompts)))
            filled = [self.direct_answer(members[i]) for i in rows]
            logits, _, _ = completion_logits(self.model, [prompts[i] for i in rows], [ids for ids, _ in filled], self.tokenizer.pad_token_id)
            for b, (_, slots) in enumerate(filled):
                values = expected_scores(logits[b, slots], self.digits, digit_values()).tolist()
                out.append({k: v for k, v in enumerate(values, 1)})
        return out

    @torch.no_grad()
    def _block_scores(self, prompts: list[tuple[list[int], list[int]]]) -> list[dict[int, float]]:
        """``score_at="block"``: one forward over each group's prompt (left-padded batches, the LM head on the
        block ends only: forward.read_logits, as GRPO on block scores draws them); member k's score is the
        expected digit where its block ends, as ``_direct_scores``."""
        from rlpost.models.forward import read_logits

        out = []
        for start in range(0, len(prompts), self.batch_size):
            chunk = prompts[start : start + self.batch_size]
            logits, _ = read_logits(self.model, [p for p, _ in chunk], [ends for _, ends in chunk], [self.digits] * len(chunk),
                                    self.tokenizer.pad_token_id)
            for b, (_, ends) in enumerate(chunk):
                values = expected_scores(logits[b, : len(ends)], range(10), digit_values()).tolist()
                out.append({k: v for k, v in enumerate(values, 1)})
        return out
