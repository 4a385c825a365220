"""Evaluation beyond one mean per metric: per-user rows, intervals, beyond-accuracy metrics, segments, comparisons."""
