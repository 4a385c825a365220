"""Serving: recommendations, histories of new users, exploration policies with logged propensities, off-policy
evaluation, export.

May import: ``models``, ``evaluation``, ``data`` and the leaf modules (``errors``, ``constants``, ``atomic``,
``settings``).
"""
