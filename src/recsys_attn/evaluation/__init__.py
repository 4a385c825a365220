"""Evaluation beyond one mean per metric: ranking metrics, per-user rows, intervals, beyond-accuracy metrics,
segments, comparisons and the headline table.

May import: ``data`` and the leaf modules (``errors``, ``constants``, ``atomic``, ``settings``); never a model.
"""
