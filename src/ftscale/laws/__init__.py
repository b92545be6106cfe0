"""Scaling-law forms, fitting, evaluation and critical points (pure numpy/scipy, no torch)."""
