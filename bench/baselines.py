"""What people write without hopbench: the baselines, with the same tolerances and stopping rule.

- ``scipy_retrieval``: one ``scipy.integrate.solve_ivp`` (RK45 = Dormand–Prince 5(4), as dopri5) per cue with
  a numpy vector field, stopped by a terminal event ‖ẋ‖∞ < tol or at t_max. scipy integrates in float64
  whatever the input dtype, so this baseline is float64.
- ``odeint_retrieval``: one full-batch ``torchdiffeq.odeint`` call (dopri5, default norm) from 0 to t_max,
  no early stopping, with a plain torch vector field.
- ``eigvals_loop``: the general Jacobian J (B, N, N) and ``torch.linalg.eigvals`` per point.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from scipy.integrate import solve_ivp
from torch import Tensor
from torchdiffeq import odeint

from hopbench.solve import SolverConfig

__all__ = ["SCIPY_METHOD", "OdeintRun", "ScipyRun", "eigvals_loop", "odeint_retrieval", "scipy_retrieval"]

SCIPY_METHOD = {"dopri5": "RK45", "bosh3": "RK23", "dopri8": "DOP853"}


@dataclass
class ScipyRun:
    x: np.ndarray  # (K, N) final states
    evaluations: np.ndarray  # (K,) vector-field evaluations per cue (solver steps and event checks)
    converged: np.ndarray  # (K,) stopped by the event ‖ẋ‖∞ < tol


@dataclass
class OdeintRun:
    x: Tensor  # (B, N) states at t_max
    calls: int  # full-batch vector-field evaluations


def numpy_field(W: np.ndarray, b: np.ndarray, beta: float) -> Callable[[np.ndarray], np.ndarray]:
    """ẏ = W tanh(βy) − y + b for one state y (N,)."""

    def field(y: np.ndarray) -> np.ndarray:
        return W @ np.tanh(beta * y) - y + b

    return field


def _solve_one(field: Callable[[np.ndarray], np.ndarray], y0: np.ndarray,
               cfg: SolverConfig) -> tuple[np.ndarray, int, bool]:
    count = [0]

    def rhs(t: float, y: np.ndarray) -> np.ndarray:
        count[0] += 1
        return field(y)

    def settled(t: float, y: np.ndarray) -> float:
        return float(np.abs(rhs(t, y)).max()) - cfg.tol

    settled.terminal = True  # type: ignore[attr-defined]
    settled.direction = -1  # type: ignore[attr-defined]
    if settled(0.0, y0) < 0:
        return y0, count[0], True
    sol = solve_ivp(rhs, (0.0, cfg.t_max), y0, method=SCIPY_METHOD[cfg.method], rtol=cfg.rtol, atol=cfg.atol,
                    events=settled)
    return sol.y[:, -1], count[0], sol.status == 1


def scipy_retrieval(W: np.ndarray, b: np.ndarray, beta: float, y0: np.ndarray, cfg: SolverConfig) -> ScipyRun:
    """Integrate each row of y0 (K, N) on its own, in float64."""
    field = numpy_field(W.astype(np.float64), b.astype(np.float64), beta)
    finals, evals, conv = [], [], []
    for row in y0.astype(np.float64):
        x, n, ok = _solve_one(field, row, cfg)
        finals.append(x)
        evals.append(n)
        conv.append(ok)
    return ScipyRun(np.stack(finals), np.asarray(evals), np.asarray(conv))


def odeint_retrieval(W: Tensor, b: Tensor, beta: float, y0: Tensor, cfg: SolverConfig) -> OdeintRun:
    """One batched dopri5 solve over [0, t_max] (no early stop, torchdiffeq's default RMS norm)."""
    calls = [0]

    def field(t: Tensor, y: Tensor) -> Tensor:
        calls[0] += 1
        return torch.tanh(beta * y) @ W.T - y + b

    span = torch.tensor([0.0, cfg.t_max], dtype=torch.float64, device=y0.device)
    with torch.no_grad():
        x = odeint(field, y0, span, method=cfg.method, rtol=cfg.rtol, atol=cfg.atol)[-1]
    return OdeintRun(x, calls[0])


def torch_speed(W: Tensor, b: Tensor, beta: float, y: Tensor) -> Tensor:
    """‖ẏ‖∞ per row (B,) of the plain torch field."""
    with torch.no_grad():
        return (torch.tanh(beta * y) @ W.T - y + b).abs().amax(-1)


def eigvals_loop(jacobian: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
    """Spectra (B, N) complex: J (B, N, N) in one batched call, then a general eigensolver per point."""
    J = jacobian(x)
    return torch.stack([torch.linalg.eigvals(J[i]) for i in range(J.shape[0])])
