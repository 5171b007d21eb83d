"""The network a model runs on: weights W, bias b, a Lagrangian and the visible neurons.

Shapes: W (N, N), b (N,), states (B, N). ``visible`` is the slice of neurons that carry patterns
(all of them, except for structures with hidden layers such as ``bipartite``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch
from torch import Tensor

from hopbench.core.activations import Lagrangian


@dataclass(frozen=True)
class Network:
    W: Tensor
    b: Tensor
    lagrangian: Lagrangian
    visible: slice = field(default_factory=lambda: slice(None))

    @property
    def n(self) -> int:
        return self.W.shape[0]

    @property
    def n_visible(self) -> int:
        return len(range(self.n)[self.visible])

    @property
    def dtype(self) -> torch.dtype:
        return self.W.dtype

    @property
    def device(self) -> torch.device:
        return self.W.device

    def is_symmetric(self, rtol: float = 1e-6) -> bool:
        """W = Wᵀ up to ``rtol`` relative to max |W|."""
        scale = self.W.abs().max().clamp_min(torch.finfo(self.W.dtype).tiny)
        return bool(((self.W - self.W.T).abs().max() <= rtol * scale).item())

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> Network:
        return replace(self, W=self.W.to(device=device, dtype=dtype), b=self.b.to(device=device, dtype=dtype))

    def embed(self, activity: Tensor) -> Tensor:
        """Place visible activities (B, N_visible) into full network activities (B, N), hidden = 0."""
        full = activity.new_zeros(activity.shape[0], self.n)
        full[:, self.visible] = activity
        return full
