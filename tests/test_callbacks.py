"""Our Lightning callbacks in isolation: smoothed early stopping."""

import pytest
import torch

from recsys_attn.callbacks import SmoothedEarlyStopping

# A noisy, still-rising validation curve (Cloze training): the raw value dips below its best for 3 checks.
RISING = [0.010, 0.015, 0.018, 0.017, 0.016, 0.016, 0.017, 0.018, 0.025]


def stops_at(curve: list[float], smoothing: float, patience: int = 3, min_delta: float = 2e-4) -> int | None:
    stopper = SmoothedEarlyStopping(
        monitor="val/ndcg@10", mode="max", patience=patience, smoothing=smoothing, min_delta=min_delta
    )
    for i, value in enumerate(curve):
        should_stop, _ = stopper._evaluate_stopping_criteria(torch.tensor(value))
        if should_stop:
            return i
    return None


def test_raw_patience_cuts_a_rising_run_the_smoothed_rule_keeps() -> None:
    assert stops_at(RISING, smoothing=0.0) == 5  # plain early stopping ends it in the dip
    assert stops_at(RISING, smoothing=0.8) is None


def test_the_smoothed_rule_still_stops_a_run_that_stopped_learning() -> None:
    plateau = [0.02, 0.03, 0.04, 0.04, 0.035, 0.03] + [0.03] * 20
    # the average creeps up to the plateau by ever smaller steps: min_delta lets patience run out
    assert stops_at(plateau, smoothing=0.8) is not None
    assert stops_at([0.04, 0.04, 0.03, 0.03, 0.02, 0.02, 0.02, 0.02], smoothing=0.8) is not None


def test_smoothing_state_resumes() -> None:
    a = SmoothedEarlyStopping(monitor="m", mode="max", patience=3, smoothing=0.5)
    a._evaluate_stopping_criteria(torch.tensor(0.2))
    b = SmoothedEarlyStopping(monitor="m", mode="max", patience=3, smoothing=0.5)
    b.load_state_dict(a.state_dict())
    b._evaluate_stopping_criteria(torch.tensor(0.4))
    assert b.smoothed is not None and float(b.smoothed) == pytest.approx(0.3)


def test_smoothing_out_of_range_names_the_key() -> None:
    with pytest.raises(ValueError, match=r"callbacks\.early_stopping\.smoothing"):
        SmoothedEarlyStopping(monitor="m", smoothing=1.0)
