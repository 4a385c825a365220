"""One optimiser step of a manually optimised module, past Lightning's hook round when nothing listens to it.

Lightning's ``manual_backward`` and ``LightningOptimizer.step`` call ``on_before_backward``, ``on_after_backward``
and ``on_before_optimizer_step`` on the module and on every callback, each in a profiler context, around the
three calls that do the work: ~0.1 ms a step on 2 CPU cores (``benchmarks/bench_overhead.py``), hooks that no
callback of ours overrides. Where none is listened to, the precision needs no loss scaling and one device holds
the model, ``lean_step`` makes those three calls itself; anything else keeps Lightning's path.
"""

from __future__ import annotations

import lightning as L
from lightning.pytorch.core.optimizer import LightningOptimizer
from lightning.pytorch.plugins.precision import MixedPrecision, Precision
from lightning.pytorch.strategies import SingleDeviceStrategy
from lightning.pytorch.utilities.model_helpers import is_overridden
from torch import Tensor

STEP_HOOKS = ("on_before_backward", "on_after_backward", "on_before_optimizer_step")
"""The hooks Lightning calls inside a manual step; a module or callback overriding one keeps Lightning's path."""


def _overrides(hook: str, instance: object, parent: type | None = None) -> bool:
    """Whether ``instance`` overrides ``hook``; True where Lightning cannot tell (a hook without code, such as a
    callable object given to ``LambdaCallback``): listening is the safe guess."""
    try:
        return is_overridden(hook, instance, parent)
    except (AttributeError, TypeError):
        return True


def hooks_listened(trainer: L.Trainer) -> list[str]:
    """``owner.hook`` for each step hook that the trainer's module (``backward`` too) or a callback overrides."""
    module = trainer.lightning_module
    listened = [f"module.{hook}" for hook in (*STEP_HOOKS, "backward") if _overrides(hook, module)]
    for callback in trainer.callbacks:  # type: ignore[attr-defined]
        listened += [f"{type(callback).__name__}.{h}" for h in STEP_HOOKS if _overrides(h, callback, L.Callback)]
    return listened


def lean_step_applies(trainer: L.Trainer) -> bool:
    """Whether ``lean_step`` does what Lightning's step would: one device, no loss scaling, no step hook listened."""
    strategy = trainer.strategy
    plugin = strategy.precision_plugin
    unscaled = type(plugin) is Precision or (type(plugin) is MixedPrecision and plugin.scaler is None)
    return type(strategy) is SingleDeviceStrategy and unscaled and not hooks_listened(trainer)


def lean_step(optimizer: LightningOptimizer, loss: Tensor) -> None:
    """Zero the gradients, back-propagate ``loss`` and step, counting the step as ``LightningOptimizer.step`` does.

    ``_on_before_step`` and ``_on_after_step`` are what the manual-optimisation loop installs on the optimiser to
    count its steps (``trainer.global_step``, which schedules, checkpoints and resumes read) and profile them.
    """
    raw = optimizer.optimizer
    raw.zero_grad(set_to_none=True)
    loss.backward()
    optimizer._on_before_step()
    raw.step()
    optimizer._on_after_step()
