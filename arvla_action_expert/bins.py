"""Per-dimension action bins: 1-D k-means centres fit on training targets.

The binned head classifies each action dim into one of ``n_bins`` centres (cross-entropy), which
keeps multi-modal targets sharp where L1 regression would average them. k-means (rather than
uniform bins) spends the resolution where the data is: most joint deltas are tiny.

Round-trip error: a value inside ``[c_0, c_last]`` decodes to its nearest centre, so the error is
at most half the widest gap between neighbouring centres (``max_roundtrip_error``).
"""

from __future__ import annotations

import torch

from arvla_action_expert.model import encode_bins

__all__ = ["decode_bins", "encode_bins", "fit_bins", "max_roundtrip_error"]


def _kmeans_1d(x: torch.Tensor, k: int, iters: int) -> torch.Tensor:
    """Lloyd's algorithm on sorted 1-D data, initialised at quantiles -> k sorted centres."""
    x = x.sort().values.to(torch.float64)
    q = (torch.arange(k, dtype=torch.float64) + 0.5) / k
    centers = torch.quantile(x, q)
    for _ in range(iters):
        mids = (centers[1:] + centers[:-1]) / 2
        idx = torch.searchsorted(mids, x)
        sums = torch.zeros(k, dtype=torch.float64).index_add_(0, idx, x)
        counts = torch.zeros(k, dtype=torch.float64).index_add_(0, idx, torch.ones_like(x))
        new = torch.where(counts > 0, sums / counts.clamp_min(1), centers)
        new = new.sort().values
        if torch.allclose(new, centers, atol=1e-9, rtol=0):
            break
        centers = new
    # duplicates (constant dims) would make bins ambiguous: spread them minimally
    eps = 1e-6 * (1 + centers.abs().max())
    for i in range(1, k):
        if centers[i] <= centers[i - 1]:
            centers[i] = centers[i - 1] + eps
    return centers


def fit_bins(values: torch.Tensor, n_bins: int, *, iters: int = 50,
             max_samples: int = 200_000, seed: int = 0) -> torch.Tensor:
    """values (M, A) normalised targets -> centres (A, n_bins) float32, sorted per dim."""
    if values.dim() != 2 or values.shape[0] < 1:
        raise ValueError(f"values must be (M>=1, action_dim), got {tuple(values.shape)}")
    if values.shape[0] > max_samples:
        g = torch.Generator().manual_seed(seed)
        values = values[torch.randperm(values.shape[0], generator=g)[:max_samples]]
    return torch.stack([_kmeans_1d(values[:, a], n_bins, iters)
                        for a in range(values.shape[1])]).float()


def decode_bins(idx: torch.Tensor, centers: torch.Tensor) -> torch.Tensor:
    """Bin indices (..., A) -> centre values (..., A)."""
    A = centers.shape[0]
    flat = idx.reshape(-1, A).t()  # (A, M)
    return centers.gather(1, flat).t().reshape(idx.shape)


def max_roundtrip_error(centers: torch.Tensor) -> torch.Tensor:
    """Per-dim bound (A,) on |decode(encode(x)) - x| for x inside the centre range."""
    return ((centers[:, 1:] - centers[:, :-1]) / 2).max(dim=1).values
