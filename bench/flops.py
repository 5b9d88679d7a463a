"""Analytic FLOPs of a built Keras model: its convolutions, counted from layer shapes (no profiler).

A multiply-add counts as 2 FLOPs. Conv2D: 2·H_out·W_out·k_h·k_w·C_in·C_out per image. Conv2DTranspose
scatters every *input* pixel through its kernel: 2·H_in·W_in·k_h·k_w·C_in·C_out, which is
2·H_out·W_out·C_in·C_out for the U-Net's 2×2, stride-2 upsampling (using H_out there would count each
output pixel's single kernel tap four times). Norms, activations, pooling and adds are left out (<1 %).
Training ≈ 3× forward (forward, gradient w.r.t. inputs, gradient w.r.t. weights).
"""

from __future__ import annotations

import math

import keras

TRAIN_FACTOR = 3


def conv_flops(layer: keras.layers.Layer) -> int:
    """Forward FLOPs per image of one convolution layer (0 for any other layer)."""
    if isinstance(layer, keras.layers.Conv2DTranspose):
        _, height, width, channels_in = layer.input.shape
        return 2 * height * width * math.prod(layer.kernel_size) * channels_in * layer.filters
    if isinstance(layer, keras.layers.Conv2D):
        _, height, width, _ = layer.output.shape
        channels_in = layer.input.shape[-1] // layer.groups
        return 2 * height * width * math.prod(layer.kernel_size) * channels_in * layer.filters
    return 0


def forward_flops(model: keras.Model) -> int:
    """Forward FLOPs per image of every convolution in `model` (nested models included)."""
    total = 0
    for layer in model.layers:
        total += forward_flops(layer) if isinstance(layer, keras.Model) else conv_flops(layer)
    return total


def train_flops(model: keras.Model) -> int:
    """FLOPs per image of one training step (forward and backward)."""
    return TRAIN_FACTOR * forward_flops(model)
