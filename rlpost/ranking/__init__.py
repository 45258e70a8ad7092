"""Reranking: the ERank and GroupRank output formats, rewards and inference scores, and TREC runs and qrels
with nDCG evaluation (spec: shared/specs/rerankers_erank_grouprank.md; the constants the papers leave open
are the spec's proposals, each a keyword argument). Pure functions, testable without a model."""
