"""The rerankers' prompts (our wording, the structure of the papers' templates; spec 2.3 and 3.3), rendered
through the model's chat template when it has one (as one user turn, GroupRank's rubric as the system turn)."""
from __future__ import annotations

import json
from collections.abc import Sequence

INSTRUCTIONS = {
    "semantic": "retrieve passages relevant to the query.",
    "followir": "retrieve relevant passages, and respect any extra relevance conditions stated in the query.",
    "bright_stackexchange": "a document is relevant if its content helps answer or address the query; merely touching "
    "related topics is not enough.",
}

ERANK = """Rate how relevant the document below is to the query, using a whole number from 0 to 10.
What counts as relevant here: {instruction}

Query:
{query}

Document:
{document}

Reason about it first, then commit to exactly one integer from 0 to 10
(0 = unrelated, 10 = fully relevant).
Reply as: <think> your reasoning </think><answer> the integer, nothing else </answer>"""

# Each prompt in three layouts: the papers' (the query first); the same message with the document block(s)
# before the query block, so the query sits next to where the scores are read; and, for GroupRank, the query
# last and also repeated after every document (with one document, ERank's, that is the query last). Our
# proposals for small models: linear probes on SmolLM2-135M's hidden states read relevance at ERank's score
# position with the query last and hardly any with it first, and in a GroupRank prompt at the end of each
# document only when the query follows it (docs/benchmarks.md). query-around puts the query first and after
# every document, so each document is also read knowing the query (our proposal: block-scored GroupRank's first
# member, the one document read before any query with query-each, held no relevance on DL19:
# scripts/bench/grouprank_positions.py). Train and rerank with the same layout.
LAYOUTS = ("query-first", "query-last", "query-each", "query-around")

# Where GroupRank's direct scoring reads member k's score: at its slot in the zero-filled answer (the
# papers' output), or at the last token of its block in the prompt, where the model has read the document
# (and, with query-each, the query after it) and the members before it. "block" is our proposal for small
# models: SmolLM2-135M's answer slot held no relevance a probe could read, its block ends with query-each
# held ERank's level (docs/benchmarks.md).
SCORE_AT = ("answer", "block")


def unknown_layout(layout: str) -> str | None:
    """The one-line complaint about a layout that is not one of LAYOUTS, else None."""
    return None if layout in LAYOUTS else f"layout {layout!r} is unknown (known: {', '.join(LAYOUTS)})"


def _query_last(template: str, block: str) -> str:
    return template.replace(f"Query:\n{{query}}\n\n{block}", f"{block}\n\nQuery:\n{{query}}")


ERANK_LAYOUTS = {"query-first": ERANK, "query-last": _query_last(ERANK, "Document:\n{document}")}
ERANK_LAYOUTS["query-each"] = ERANK_LAYOUTS["query-last"]
ERANK_LAYOUTS["query-around"] = ERANK.replace("Document:\n{document}", "Document:\n{document}\n\nQuery:\n{query}")

ERANK_DIRECT = "<think></think><answer>"  # the answer's prefix when scoring without reasoning
GROUPRANK_ANSWER = "<reason></reason>\n<answer>\n```json\n{answer}\n```\n</answer>"  # an answer without reasoning


def opening(document: str, words: int) -> str:
    """A document's first ``words`` words, without quotes or backslashes (so the JSON key holds them as they are)."""
    return " ".join(document.replace('"', "").replace("\\", "").split()[:words])


def grouprank_json(scores: Sequence[int], documents: Sequence[str] = (), echo_words: int = 0) -> str:
    """GroupRank's answer object: member ``[k]``'s score, k from 1 in presentation order. With ``echo_words``
    each key also repeats the first words of its document, ``"[k] <words>"`` (our proposal for small models:
    a linear probe on SmolLM2-135M's hidden state where the score is written reads some relevance then and
    none without; docs/benchmarks.md)."""
    if not echo_words:
        return json.dumps({f"[{k}]": s for k, s in enumerate(scores, 1)})
    return json.dumps({f"[{k}] {opening(d, echo_words)}": s for k, (s, d) in enumerate(zip(scores, documents, strict=True), 1)})


def grouprank_direct(documents: Sequence[str], echo_words: int = 0) -> str:
    """GroupRank's answer without reasoning for a group of ``documents``, every score 0 (what direct scoring feeds)."""
    return GROUPRANK_ANSWER.format(answer=grouprank_json([0] * len(documents), documents, echo_words))

GROUPRANK_SYSTEM = """You rank documents by how much they help with the user's query.
Judge usefulness first (does it give information, a solution or a direct answer the user can act on?)
and topical relevance second.
Work in this order: figure out what the user actually needs; check each document against that need;
compare the documents with one another; then give scores that reflect their relative usefulness.
Score scale, 0 to 10:
  9-10  answers the query directly with information the user can use
  7-8   contributes a lot of useful material
  5-6   partly useful, incomplete
  3-4   on topic but of little practical help
  1-2   only mentions related subjects
  0     no help at all"""

GROUPRANK = """Below are {c} documents, each labelled with a number in square brackets. Score every one of them
for usefulness and relevance to the query.

Query:
{query}

Documents:
{docs}

Answer in two parts and write nothing outside them:
<reason> a short analysis of each document and why it gets its score </reason>
<answer>
```json
{keys}
```
</answer>
Every one of the {c} documents must appear as a key, and every value must be an integer from 0 to 10."""
GROUPRANK_KEYS = '{{"[1]": <int>, "[2]": <int>, ..., "[{c}]": <int>}}'
GROUPRANK_ECHO_KEYS = ('{{"[1] <the first {w} words of document [1]>": <int>, ..., '
                       '"[{c}] <the first {w} words of document [{c}]>": <int>}}')

GROUP_DOC_CHARS = 3000
GROUPRANK_LAYOUTS = {"query-first": GROUPRANK, "query-last": _query_last(GROUPRANK, "Documents:\n{docs}")}
GROUPRANK_LAYOUTS["query-each"] = GROUPRANK_LAYOUTS["query-last"]  # and grouprank_prompt adds the query to each document
GROUPRANK_LAYOUTS["query-around"] = GROUPRANK  # the query first, and grouprank_prompt adds it to each document


def erank_prompt(query: str, document: str, instruction: str = "semantic", layout: str = "query-first") -> str:
    """ERank's user message; ``instruction``: a key of INSTRUCTIONS or the relevance definition itself;
    ``layout``: one of LAYOUTS (checked by the callers)."""
    return ERANK_LAYOUTS[layout].format(instruction=INSTRUCTIONS.get(instruction, instruction), query=query, document=document)


def _grouprank_blocks(query: str, documents: Sequence[str], layout: str) -> list[str]:
    after = f"\nQuery: {query}" if layout in ("query-each", "query-around") else ""
    return [f"[{i}]. {' '.join(d.split())[:GROUP_DOC_CHARS].rstrip()}{after}" for i, d in enumerate(documents, 1)]


def grouprank_prompt(query: str, documents: Sequence[str], layout: str = "query-first", echo_words: int = 0) -> str:
    """GroupRank's user message: documents numbered [1].. in presentation order, newlines collapsed, each cut
    at GROUP_DOC_CHARS characters; ``layout``: one of LAYOUTS (checked by the callers); ``echo_words``: the
    answer's keys repeat that many of each document's first words (grouprank_json)."""
    c = len(documents)
    keys = GROUPRANK_ECHO_KEYS.format(c=c, w=echo_words) if echo_words else GROUPRANK_KEYS.format(c=c)
    docs = "\n\n".join(_grouprank_blocks(query, documents, layout))
    return GROUPRANK_LAYOUTS[layout].format(c=c, query=query, docs=docs, keys=keys)


def grouprank_block_ends(query: str, documents: Sequence[str], layout: str = "query-first", echo_words: int = 0) -> list[int]:
    """The character offset, in ``grouprank_prompt``'s message, of each document block's last character (its
    text, or with query-each and query-around the query after it): where ``score_at: block`` reads each member's score."""
    blocks = _grouprank_blocks(query, documents, layout)
    at = grouprank_prompt(query, documents, layout, echo_words).index("\n\n".join(blocks))
    ends = []
    for b in blocks:
        ends.append(at + len(b) - 1)
        at += len(b) + 2
    return ends


def render_text(tokenizer, user: str, system: str | None = None) -> str:
    """The prompt's text exactly as a training run renders it (``format_prompt``: the chat template's generation
    prompt, or for a tokenizer without one the plain text)."""
    from rlpost.data.prompts import format_prompt

    return format_prompt({"question": user}, tokenizer, system_prompt=system)


def render(tokenizer, user: str, system: str | None = None, answer_prefix: str = "") -> list[int]:
    """Token ids of ``render_text``, then ``answer_prefix``."""
    return tokenizer(render_text(tokenizer, user, system) + answer_prefix, add_special_tokens=False).input_ids
