"""rlpost: RL post-training for LLMs (GRPO and variants) on Ray actors."""
__version__ = "0.1.0"
