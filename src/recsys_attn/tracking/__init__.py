"""Following a run while it trains: Lightning callbacks, progress lines, loggers (CSV, W&B) and sweep summaries.

May import: ``serving``, ``models``, ``evaluation``, ``data`` and the leaf modules (``errors``, ``constants``,
``atomic``, ``settings``). Imported by ``run``, the jobs and the commands; never by the layers below.
"""
