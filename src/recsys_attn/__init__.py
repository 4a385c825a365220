"""recsys_attn: attention-based sequential recommenders on Lightning + Hydra.

The package is layered by role; imports only run downward (``tests/test_architecture.py`` checks it):

- the commands (``train``, ``evaluate``, ``predict``, ``export``, ``ope``, ``compare``, ``prepare``): ``python -m``
  entry points that parse the command line and hand over to
- ``jobs``: what each command does, one module each;
- ``run``: starting and ending a run (Hydra entry, run directory, checkpoints, machine, console);
- ``tracking``: callbacks, progress, loggers and sweep summaries while a run trains;
- ``serving``: recommendations, exploration policies, off-policy evaluation, export;
- ``models``: the recommenders and their shared base;
- ``evaluation``: ranking metrics, per-user rows, intervals, comparisons;
- ``data``: logs to batches;
- leaves every layer may use: ``errors``, ``constants``, ``atomic`` (writes) and ``settings`` (checked settings).
"""

__version__ = "0.1.0"
