"""Scatter helpers on plain tensors (no torch-scatter): sums and means over an index."""

from __future__ import annotations

import torch


def scatter_sum(
    src: torch.Tensor, index: torch.Tensor, dim_size: int, dim: int = 0
) -> torch.Tensor:
    """Sum the slices of ``src`` along ``dim`` into ``dim_size`` bins given by ``index``.

    ``index`` is 1-D with ``src.shape[dim]`` entries. Output has ``dim_size`` along ``dim``.
    """
    shape = list(src.shape)
    shape[dim] = dim_size
    out = torch.zeros(shape, dtype=src.dtype, device=src.device)
    return out.index_add_(dim, index, src)


def scatter_mean(
    src: torch.Tensor, index: torch.Tensor, dim_size: int, counts: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean of the rows of ``src`` (first axis) per bin; empty bins give 0.

    ``counts`` (dim_size,) may be passed when known (e.g. atoms per graph).
    """
    total = scatter_sum(src, index, dim_size, 0)
    if counts is None:
        counts = scatter_sum(torch.ones_like(index, dtype=src.dtype), index, dim_size, 0)
    counts = counts.to(src.dtype).clamp(min=1)
    return total / counts.view([-1] + [1] * (src.dim() - 1))
