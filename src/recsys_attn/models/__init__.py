"""The recommenders: a shared Lightning base (training, evaluation, optimisers), encoders, losses and each model.

May import: ``evaluation``, ``data`` and the leaf modules (``errors``, ``constants``, ``atomic``, ``settings``).
"""
