"""Ids seen, as hashes in sorted runs: every earlier id with the same hash is found, however the runs merged."""

from __future__ import annotations

import numpy as np

from recsys_attn.serving.seen_ids import SeenIds


def test_every_seen_hash_is_found_with_its_line_across_merged_runs() -> None:
    rng = np.random.default_rng(0)
    seen = SeenIds()
    hashes = rng.integers(0, 50, 300).astype(np.uint64)  # many equal hashes
    for start in range(0, 300, 7):  # blocks of 7 lines: runs merge as they come
        seen.add(hashes[start : start + 7], np.arange(start, min(start + 7, 300)) + 1)
    assert len(seen) == 300
    query = np.array([3, 99, 3, 49], np.uint64)
    at, lines = seen.matches(query)
    found = sorted(zip(at.tolist(), lines.tolist(), strict=True))
    expected = sorted((i, line + 1) for i, h in enumerate(query) for line in np.flatnonzero(hashes == h).tolist())
    assert found == expected and len(found) > 4


def test_nothing_seen_matches_nothing() -> None:
    at, lines = SeenIds().matches(np.array([1, 2], np.uint64))
    assert at.size == 0 and lines.size == 0
