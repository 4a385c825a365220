"""The ids seen so far in a stream, kept as 64-bit hashes with the line of each: 16 bytes an id, not the ids."""

from __future__ import annotations

import numpy as np


class SeenIds:
    """Hashes of the ids seen so far and the line of each, in sorted runs.

    A new run is merged with the run before it while that one is at most twice its size (a log-structured merge):
    there are O(log n) runs to search, and each hash is moved O(log n) times in all. A hash match is a candidate
    only: the caller compares the ids themselves.
    """

    def __init__(self) -> None:
        self._runs: list[tuple[np.ndarray, np.ndarray]] = []  # (sorted uint64 hashes [n], int64 lines [n])

    def __len__(self) -> int:
        return sum(hashes.size for hashes, _ in self._runs)

    def matches(self, hashes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(i, line)`` of each seen id whose hash equals ``hashes[i]``, in no particular order.

        Args:
            hashes: [m] uint64 hashes of the ids to look up.

        Returns:
            [h] int64 positions into ``hashes`` and [h] int64 lines of the seen ids with the same hash.
        """
        found_at: list[np.ndarray] = [np.empty(0, np.int64)]
        found_lines: list[np.ndarray] = [np.empty(0, np.int64)]
        for keys, lines in self._runs:
            lo = np.searchsorted(keys, hashes, "left")  # [m]
            hi = np.searchsorted(keys, hashes, "right")  # [m]
            counts = hi - lo  # [m] seen ids with each hash: almost always 0
            at = np.repeat(np.arange(hashes.size), counts)  # [h]
            offsets = np.arange(at.size) - np.repeat(np.cumsum(counts) - counts, counts)  # [h] rank within a match
            found_at.append(at)
            found_lines.append(lines[lo[at] + offsets])
        return np.concatenate(found_at), np.concatenate(found_lines)

    def add(self, hashes: np.ndarray, lines: np.ndarray) -> None:
        """Remember ids by their ``hashes`` ([m] uint64) seen on ``lines`` ([m] int64)."""
        order = np.argsort(hashes, kind="stable")  # [m]
        self._runs.append((hashes[order], lines[order].astype(np.int64)))
        while len(self._runs) > 1 and self._runs[-2][0].size <= 2 * self._runs[-1][0].size:
            (keys_a, lines_a), (keys_b, lines_b) = self._runs[-2:]
            keys = np.concatenate([keys_a, keys_b])  # [a + b]
            order = np.argsort(keys, kind="stable")  # two sorted runs: a merge
            self._runs[-2:] = [(keys[order], np.concatenate([lines_a, lines_b])[order])]
