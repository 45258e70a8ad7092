"""Rollout: engines that generate completions with per-token logprobs, the worker, samplers."""
