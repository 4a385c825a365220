"""Starting and ending a run: Hydra's entry point, the run directory, checkpoints, the machine, the console.

``entry`` wraps every command (one-line user errors, resolvers); ``runner`` starts a run (settings, seed, output
folder) and collects its metrics; ``run_dir`` and ``checkpoints`` find, check and resume what earlier runs left;
``monitors`` checks callbacks against the model; ``hardware`` and ``noise`` fit the run to the machine and quiet
third-party output.

May import: ``tracking``, ``serving``, ``models``, ``evaluation``, ``data`` and the leaf modules (``errors``,
``constants``, ``atomic``, ``settings``). Imported by the jobs and the commands only.
"""
