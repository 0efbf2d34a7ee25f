"""Small helpers the detectors share (validation, step formatting)."""

from __future__ import annotations

import numpy as np


def require_in_range(name: str, value: float, low: float, high: float) -> float:
    """Return ``value`` as float, or raise ``ValueError`` naming the parameter."""
    value = float(value)
    if not (low <= value <= high):
        raise ValueError(f"{name} must lie in [{low}, {high}], not {value}")
    return value


def fmt(value: float) -> str:
    """A loss value for a message: 4 significant digits."""
    return f"{value:.4g}"


def block_median_noise(noise: float, block_size: int) -> float:
    """Standard error of the median of ``block_size`` points with per-point noise ``noise``.

    The median's standard error is sqrt(pi/2) ~ 1.2533 times the mean's for Gaussian noise.
    """
    return float(noise * 1.2533 / np.sqrt(max(block_size, 1)))
