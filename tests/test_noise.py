"""Lightning's litlogger tip and torch's LeafSpec deprecation stay off the console; other messages do not."""

import logging
import subprocess
import warnings
from pathlib import Path

import pytest

from recsys_attn.noise import LIGHTNING_TIP, RANK_ZERO_LOGGERS, silence_third_party_noise


@pytest.mark.slow
def test_a_training_run_prints_neither_the_tip_nor_the_deprecation(
    ml100k_run: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    _, proc = ml100k_run
    out = proc.stdout + proc.stderr
    assert "litlogger" not in out and "LeafSpec" not in out
    assert "GPU available:" in out  # Lightning's other messages still show


def test_only_the_tip_is_dropped(caplog: pytest.LogCaptureFixture) -> None:
    silence_third_party_noise()
    silence_third_party_noise()  # idempotent: one filter per logger
    for name in RANK_ZERO_LOGGERS:
        logger = logging.getLogger(name)
        assert len(logger.filters) == 1
        with caplog.at_level(logging.INFO, logger=name):
            logger.info(f"{LIGHTNING_TIP} try installing litlogger")
            logger.info("GPU available: False, used: False")
    assert caplog.messages == ["GPU available: False, used: False"] * len(RANK_ZERO_LOGGERS)


def test_only_the_leafspec_deprecation_is_dropped() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        silence_third_party_noise()
        warnings.warn("`isinstance(treespec, LeafSpec)` is deprecated, use ... instead.", FutureWarning, stacklevel=1)
        warnings.warn("something else is deprecated", FutureWarning, stacklevel=1)
    assert [str(w.message) for w in caught] == ["something else is deprecated"]


def test_only_the_sync_dist_advice_on_evaluation_values_is_dropped() -> None:
    advice = (
        "It is recommended to use `self.log({!r}, ..., sync_dist=True)` when logging on epoch level in distributed"
        " setting to accumulate the metric across devices."
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        silence_third_party_noise()
        for name in ("val/ndcg@10", "test/users", "segments/test/history_short/ndcg@10", "train/loss_epoch"):
            warnings.warn(advice.format(name), UserWarning, stacklevel=1)
    assert [str(w.message) for w in caught] == [advice.format("train/loss_epoch")]  # the training loss is per device
