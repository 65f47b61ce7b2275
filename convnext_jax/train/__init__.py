"""Training: optimizer and schedules, train/eval steps, checkpoints, metrics, the loop."""
