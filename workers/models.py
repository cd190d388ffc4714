"""Model builders for the built-in trainers, made only of ``torch.nn`` modules so a saved model loads anywhere.

Standardisation lives inside the model, as frozen layers, so the saved model takes raw
features (or raw pixels) and, for regression, returns predictions in target units.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

# Hidden width of the CNN's dense layer.
CNN_HIDDEN_SIZE = 128

# A feature with a smaller spread is left unscaled rather than blown up (constant columns).
_MIN_STD = 1e-8


def build_mlp(
    n_features: int,
    n_outputs: int,
    *,
    hidden_size: int,
    num_layers: int,
    dropout: float,
    feature_mean: Sequence[float] | np.ndarray,
    feature_std: Sequence[float] | np.ndarray,
    target_mean: float | None = None,
    target_std: float | None = None,
) -> nn.Sequential:
    """A multilayer perceptron: standardise, ``num_layers`` x (Linear, ReLU, Dropout), Linear.

    With ``target_mean``/``target_std`` (regression, ``n_outputs == 1``) a last frozen layer
    maps the standardised output back to target units; train ``model[:-1]`` on the
    standardised target.
    """
    layers: list[nn.Module] = [standardize_features(feature_mean, feature_std)]
    width = n_features
    for _ in range(num_layers):
        layers += [nn.Linear(width, hidden_size), nn.ReLU(), nn.Dropout(p=dropout)]
        width = hidden_size
    layers.append(nn.Linear(width, n_outputs))
    if target_mean is not None or target_std is not None:
        if target_mean is None or target_std is None or n_outputs != 1:
            raise ValueError("target_mean and target_std go together, and only with n_outputs == 1")
        layers.append(unstandardize_target(target_mean, target_std))
    return nn.Sequential(*layers)


def build_cnn(
    channels: int,
    height: int,
    width: int,
    n_classes: int,
    *,
    filters: int,
    dropout: float,
    pixel_mean: Sequence[float] | np.ndarray,
    pixel_std: Sequence[float] | np.ndarray,
) -> nn.Sequential:
    """A small CNN: standardise, two (Conv3x3, ReLU, MaxPool2) blocks, Flatten, Dropout, Linear, ReLU, Dropout, Linear.

    The second block has ``2 * filters`` channels. A block skips its pooling when the image
    is already smaller than 2 pixels on a side, so tiny images (8x8 digits) work.
    """
    layers: list[nn.Module] = [standardize_pixels(pixel_mean, pixel_std)]
    in_channels, h, w = channels, height, width
    for out_channels in (filters, 2 * filters):
        layers += [nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1), nn.ReLU()]
        if h >= 2 and w >= 2:
            layers.append(nn.MaxPool2d(2))
            h, w = h // 2, w // 2
        in_channels = out_channels
    layers += [
        nn.Flatten(),
        nn.Dropout(p=dropout),
        nn.Linear(in_channels * h * w, CNN_HIDDEN_SIZE),
        nn.ReLU(),
        nn.Dropout(p=dropout),
        nn.Linear(CNN_HIDDEN_SIZE, n_classes),
    ]
    return nn.Sequential(*layers)


def standardize_features(mean: Sequence[float] | np.ndarray, std: Sequence[float] | np.ndarray) -> nn.Linear:
    """A frozen ``Linear(n, n)`` computing ``(x - mean) / std`` per feature."""
    mean_t, std_t = _stats(mean, std)
    layer = nn.Linear(len(mean_t), len(mean_t))
    with torch.no_grad():
        layer.weight.copy_(torch.diag(1.0 / std_t))
        layer.bias.copy_(-mean_t / std_t)
    return layer.requires_grad_(False)


def standardize_pixels(mean: Sequence[float] | np.ndarray, std: Sequence[float] | np.ndarray) -> nn.Conv2d:
    """A frozen 1x1 ``Conv2d`` computing ``(x - mean) / std`` per channel."""
    mean_t, std_t = _stats(mean, std)
    channels = len(mean_t)
    layer = nn.Conv2d(channels, channels, kernel_size=1, bias=True)
    assert layer.bias is not None  # bias=True
    with torch.no_grad():
        layer.weight.copy_(torch.diag(1.0 / std_t).reshape(channels, channels, 1, 1))
        layer.bias.copy_(-mean_t / std_t)
    return layer.requires_grad_(False)


def unstandardize_target(mean: float, std: float) -> nn.Linear:
    """A frozen ``Linear(1, 1)`` computing ``y * std + mean``."""
    layer = nn.Linear(1, 1)
    with torch.no_grad():
        layer.weight.fill_(float(std) if abs(std) > _MIN_STD else 1.0)
        layer.bias.fill_(float(mean))
    return layer.requires_grad_(False)


def column_stats(values: np.ndarray, axis: int | tuple[int, ...] = 0) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation over ``axis``, as float32, with a spread of 1 where there is none.

    Use it for every statistic handed to the builders, so the trainer and the model agree.
    """
    values = np.asarray(values)
    # Accumulate in float64 without first copying a large float32 image array to float64.
    mean, std = values.mean(axis=axis, dtype=np.float64), values.std(axis=axis, dtype=np.float64)
    return mean.astype(np.float32), np.where(std > _MIN_STD, std, 1.0).astype(np.float32)


def trainable_weights(model: nn.Module) -> list[nn.Parameter]:
    """The parameters L1/L2 penalise: trainable weight matrices and kernels (no biases, no frozen layers)."""
    return [param for param in model.parameters() if param.requires_grad and param.dim() > 1]


def _stats(mean: Sequence[float] | np.ndarray, std: Sequence[float] | np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    mean_t = torch.as_tensor(np.asarray(mean, dtype=np.float32)).reshape(-1)
    std_t = torch.as_tensor(np.asarray(std, dtype=np.float32)).reshape(-1)
    if mean_t.shape != std_t.shape:
        raise ValueError(f"mean and std must have the same length, got {len(mean_t)} and {len(std_t)}")
    return mean_t, torch.where(std_t > _MIN_STD, std_t, torch.ones_like(std_t))
