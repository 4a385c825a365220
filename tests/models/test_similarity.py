"""model.similarity: dot products, or cosines over a temperature (HSTU's scoring), in the loss and in scores alike."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from recsys_attn.data.batches import next_item_batch
from recsys_attn.models.hstu import HSTU
from recsys_attn.models.sasrec import SASRec
from tests.tolerances import assert_close, tol

N_ITEMS = 9
WINDOWS = torch.tensor([[0, 0, 3, 4, 5, 6, 7, 8, 9], [1, 2, 3, 4, 5, 6, 7, 8, 9]])  # [2, L + 1]


def model(similarity: str, temperature: float = 0.1) -> SASRec:
    torch.manual_seed(0)
    m = SASRec(
        N_ITEMS, hidden_size=16, num_blocks=1, max_len=8, dropout=0.0, similarity=similarity, temperature=temperature
    )
    return m.double().eval()


def test_cosine_scores_are_the_cosines_over_the_temperature() -> None:
    m = model("cosine", temperature=0.1)
    items = WINDOWS[:, 1:]  # [2, 8]
    with torch.no_grad():
        got = m.score(items)  # [2, V]
        state = m.states(items)[:, -1]  # [2, D]
        table = m.encoder.item_weights(N_ITEMS)  # [V, D]
        expected = F.cosine_similarity(state[:, None, :], table[None, :, :], dim=-1) / 0.1  # [2, V]
    assert got.dtype == torch.float32  # scores are handed over in float32 (fp32_scores)
    assert_close(got[:, 1:], expected[:, 1:].float(), rtol=tol(torch.float32, 2))  # float64 math, one rounding
    assert got[:, 1:].abs().max() <= 1 / 0.1 + 1e-9  # bounded by 1 / temperature


@pytest.mark.parametrize(("similarity", "factor"), [("cosine", 1.0), ("dot", 3.0)])
def test_only_cosine_scores_ignore_the_length_of_states_and_item_vectors(similarity: str, factor: float) -> None:
    m = model(similarity)
    state, table = torch.randn(4, 16, dtype=torch.float64), torch.randn(N_ITEMS + 1, 16, dtype=torch.float64)
    users, items = m.similarity_inputs(state, table)
    users3, items3 = m.similarity_inputs(state * 3.0, table)  # [4, D], [V, D]
    assert_close(users3 @ items3.T, factor * (users @ items.T), rtol=tol(torch.float64, 32))


def test_the_loss_is_given_the_normalised_states_and_items() -> None:
    m = model("cosine", temperature=0.2).train()
    seen: dict[str, torch.Tensor] = {}

    def capture(states: torch.Tensor, targets: torch.Tensor, table: torch.Tensor, ctx: object) -> torch.Tensor:
        seen.update(states=states, table=table)
        return states.sum() * 0.0

    m.loss_fn = capture  # type: ignore[assignment]
    batch = next_item_batch(WINDOWS)
    m.training_step(batch, 0)
    rtol = tol(torch.float64, 32)
    assert_close(
        seen["states"].norm(dim=-1), torch.full((seen["states"].shape[0],), 5.0, dtype=torch.float64), rtol=rtol
    )
    assert_close(seen["table"][1:].norm(dim=-1), torch.ones(N_ITEMS, dtype=torch.float64), rtol=rtol)


def test_hstu_scores_as_its_reference_and_the_others_by_dot_products() -> None:
    hstu = HSTU(N_ITEMS, hidden_size=16, max_len=8)
    assert (hstu.settings.similarity, hstu.settings.temperature) == ("cosine", 0.05)
    assert SASRec(N_ITEMS, hidden_size=16, max_len=8).settings.similarity == "dot"
