"""Developer tooling: the quality gate and the lock helper (not shipped in images)."""
