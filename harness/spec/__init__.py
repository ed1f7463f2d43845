"""What an experiment is, torch-free: the job grid, seed and direction rules (and, in time,
the protocol schema and the condition registry). Depends only on ``harness.conditions``,
``harness.protocol`` and ``harness.errors``."""
