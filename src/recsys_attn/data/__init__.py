"""Interaction logs to batches: sources and their readers, preparation and its cache, splits, the datamodule.

May import: the leaf modules only (``errors``, ``constants``, ``atomic``, ``settings``). Every other layer imports it.
"""
