"""Bounded memory for batched N × N work: points are taken in chunks whose matrices stay under a budget."""

from __future__ import annotations

from torch import Tensor

__all__ = ["MATRIX_CHUNK_ENTRIES", "matrix_chunks"]

#: batched N × N work (Newton polish, the stability analysis) is done in chunks of at most this many
#: matrix entries: 2^26 float64 entries, 512 MiB a matrix
MATRIX_CHUNK_ENTRIES = 2**26


def matrix_chunks(x: Tensor) -> tuple[Tensor, ...]:
    """Points x (B, N) split so that each chunk's (b, N, N) matrices hold at most MATRIX_CHUNK_ENTRIES."""
    return x.split(max(1, MATRIX_CHUNK_ENTRIES // x.shape[-1] ** 2))
