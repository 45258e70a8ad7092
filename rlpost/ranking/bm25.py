"""A BM25 first stage over a user's corpus (bm25s: English stopwords, Snowball stemming), for `rlpost rerank
--corpus C --topics T` without a run."""
from __future__ import annotations

import logging

from rlpost.config import ConfigError
from rlpost.ranking.trec import Run


def bm25_run(corpus: dict[str, str], topics: dict[str, str], depth: int = 100) -> Run:
    """{qid: {docid: BM25 score}} of each topic's ``depth`` best documents."""
    try:
        import bm25s
        import Stemmer
    except ImportError:
        raise ConfigError("a BM25 first stage needs bm25s and PyStemmer: pip install 'rlpost[rerank]'") from None
    logging.getLogger("bm25s").setLevel(logging.WARNING)  # it logs its indexing steps at debug level to the root handler
    ids = list(corpus)
    stemmer = Stemmer.Stemmer("english")
    index = bm25s.BM25()
    index.index(bm25s.tokenize([corpus[d] for d in ids], stopwords="en", stemmer=stemmer, show_progress=False), show_progress=False)
    qids = list(topics)
    queries = bm25s.tokenize([topics[q] for q in qids], stopwords="en", stemmer=stemmer, show_progress=False)
    docs, scores = index.retrieve(queries, k=min(depth, len(ids)), show_progress=False)
    return {q: {ids[j]: float(s) for j, s in zip(docs[n], scores[n])} for n, q in enumerate(qids)}
