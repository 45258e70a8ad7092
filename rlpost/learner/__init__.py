"""The learner: policy updates (GRPO family), update modes, weight export for sync."""
