"""The ids seen so far in a stream, kept as their 64-bit hashes: 8 bytes an id, not the ids."""

from __future__ import annotations

import numpy as np


class SeenHashes:
    """The 64-bit hashes of the ids seen so far, in sorted runs.

    A new run is merged with the run before it while that one is at most twice its size (a log-structured merge):
    there are O(log n) runs to search, and each hash is moved O(log n) times in all. A hash seen before is a
    candidate only: two ids may share a hash, so the caller compares the ids themselves.
    """

    def __init__(self) -> None:
        self._runs: list[np.ndarray] = []  # sorted uint64 hashes

    def __len__(self) -> int:
        return sum(run.size for run in self._runs)

    def seen(self, hashes: np.ndarray) -> np.ndarray:
        """[m] bool: whether each of ``hashes`` ([m] uint64) was added before."""
        found = np.zeros(hashes.shape, bool)  # [m]
        for run in self._runs:
            at = np.minimum(np.searchsorted(run, hashes), run.size - 1)  # [m]
            found |= run[at] == hashes
        return found

    def add(self, hashes: np.ndarray) -> None:
        """Remember ``hashes`` ([m] uint64)."""
        if hashes.size == 0:
            return
        self._runs.append(np.sort(hashes))
        while len(self._runs) > 1 and self._runs[-2].size <= 2 * self._runs[-1].size:
            merged = np.concatenate(self._runs[-2:])  # two sorted runs
            merged.sort(kind="stable")  # a merge of the two
            self._runs[-2:] = [merged]
