"""RoMa's Gaussian-process match encoder: the posterior mean of B's coordinate embedding at A's features."""

from __future__ import annotations

import math

import torch
from torch import nn

from ...conventions import normalized_grid
from ..amp import no_autocast


def cosine_kernel(x: torch.Tensor, y: torch.Tensor, temperature: float, eps: float = 1e-6) -> torch.Tensor:
    """``exp((cos(x_i, y_j) - 1) / T)`` for ``x`` ``(B, N, D)`` and ``y`` ``(B, M, D)`` -> ``(B, N, M)``."""
    cos = torch.einsum("bnd,bmd->bnm", x, y) / (x.norm(dim=-1)[..., None] * y.norm(dim=-1)[:, None] + eps)
    return ((cos - 1.0) / torch.tensor(temperature, device=cos.device)).exp()


class GP(nn.Module):
    """GP regression from B's features to B's (Fourier-embedded) coordinates, evaluated at A's features.

    ``forward(x, y)``: ``x`` (B, D, h1, w1) features of A, ``y`` (B, D, h2, w2) features of B ->
    posterior mean ``(B, gp_dim, h1, w1)``. Runs in float32 (outside autocast), as published.
    """

    def __init__(self, gp_dim: int = 512, temperature: float = 0.2, sigma_noise: float = 0.1):
        super().__init__()
        self.temperature = temperature
        self.sigma_noise = sigma_noise
        self.pos_conv = nn.Conv2d(2, gp_dim, 1, 1)
        self.solver = "cholesky"  # used in eval; training always uses the explicit inverse (as upstream)

    def embed_coordinates(self, batch: int, height: int, width: int, device) -> torch.Tensor:
        """``cos(8 pi (W c + b))`` of B's cell centres -> ``(B, gp_dim, h, w)``."""
        coords = normalized_grid(height, width, device=device).permute(2, 0, 1)[None].expand(batch, 2, height, width)
        return torch.cos(8 * math.pi * self.pos_conv(coords))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with no_autocast(x.device):  # float32 solve even inside a caller's autocast region
            return self._posterior_mean(x, y)

    def _posterior_mean(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        b, _, h1, w1 = x.shape
        _, _, h2, w2 = y.shape
        f = self.embed_coordinates(b, h2, w2, y.device)
        dim = f.shape[1]
        x = x.float().flatten(2).transpose(1, 2)
        y = y.float().flatten(2).transpose(1, 2)
        f = f.flatten(2).transpose(1, 2)
        k_yy = cosine_kernel(y, y, self.temperature)
        k_xy = cosine_kernel(x, y, self.temperature)
        noise = self.sigma_noise * torch.eye(h2 * w2, device=x.device)[None]
        if self.training or self.solver == "inverse":
            mean = k_xy.matmul(torch.linalg.inv(k_yy + noise).matmul(f))
        else:
            chol = torch.linalg.cholesky(k_yy + noise)
            mean = k_xy @ torch.cholesky_solve(f.reshape(b, h2 * w2, dim), chol, upper=False)
        return mean.transpose(1, 2).reshape(b, dim, h1, w1)
