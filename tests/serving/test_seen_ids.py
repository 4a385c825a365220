"""Ids seen, as hashes in sorted runs: a hash added in any block is found, however the runs merged."""

from __future__ import annotations

import numpy as np

from recsys_attn.serving.seen_ids import SeenHashes


def test_a_hash_is_seen_once_added_across_merged_runs() -> None:
    rng = np.random.default_rng(0)
    hashes = rng.integers(0, 2**64 - 1, 300, dtype=np.uint64)
    seen = SeenHashes()
    assert not seen.seen(hashes).any()
    for start in range(0, 300, 7):  # blocks of 7: runs merge as they come
        block = hashes[start : start + 7]
        assert seen.seen(block).tolist() == [h in hashes[:start] for h in block]
        seen.add(block)
    assert len(seen) == 300 and seen.seen(hashes).all()
    others = rng.integers(0, 2**64 - 1, 1000, dtype=np.uint64)
    assert seen.seen(others).tolist() == np.isin(others, hashes).tolist()  # nothing else, below or above all
    assert seen.seen(np.array([0, 2**64 - 1], np.uint64)).tolist() == [False, False]
