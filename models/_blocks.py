"""Building blocks shared by the U-Net family: conv/residual blocks, attention gate, encoder/decoder steps.

Each block is a plain function taking and returning a Keras tensor (functional API), so the
architectures in ``_unet.py`` are just compositions of these.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import keras
from keras import layers

from models._names import NORMS

Block = Callable[..., keras.KerasTensor]


def check_norm(norm: str) -> None:
    """Raise ValueError for a normalization name other than those in ``NORMS``."""
    if norm not in NORMS:
        raise ValueError(f"unknown norm {norm!r}; allowed: {', '.join(NORMS)}")


def normalization(x: keras.KerasTensor, norm: str) -> keras.KerasTensor:
    """Apply batch norm, group norm (groups dividing the channel count, at most 8) or nothing."""
    check_norm(norm)
    if norm == "batch":
        return layers.BatchNormalization(momentum=0.9)(x)
    if norm == "group":
        return layers.GroupNormalization(groups=math.gcd(8, x.shape[-1]))(x)
    return x


def conv_norm(x: keras.KerasTensor, filters: int, kernel_size: int, norm: str) -> keras.KerasTensor:
    """Convolution followed by normalization; the bias is dropped when a norm layer would cancel it."""
    x = layers.Conv2D(filters, kernel_size, padding="same", use_bias=norm == "none")(x)
    return normalization(x, norm)


def _conv_stack(x: keras.KerasTensor, filters: int, norm: str, dropout: float) -> keras.KerasTensor:
    """conv3x3-norm-relu, optional spatial dropout, conv3x3-norm (no final activation)."""
    x = layers.ReLU()(conv_norm(x, filters, 3, norm))
    if dropout > 0:
        x = layers.SpatialDropout2D(dropout)(x)
    return conv_norm(x, filters, 3, norm)


def conv_block(x: keras.KerasTensor, filters: int, norm: str, dropout: float) -> keras.KerasTensor:
    """Classic U-Net block: two 3x3 conv + norm + ReLU."""
    return layers.ReLU()(_conv_stack(x, filters, norm, dropout))


def residual_block(x: keras.KerasTensor, filters: int, norm: str, dropout: float) -> keras.KerasTensor:
    """ResU-Net block: the conv stack plus a 1x1 projection shortcut (conv + norm), added, then ReLU."""
    shortcut = conv_norm(x, filters, 1, norm)
    return layers.ReLU()(layers.Add()([_conv_stack(x, filters, norm, dropout), shortcut]))


def attention_gate(skip: keras.KerasTensor, gating: keras.KerasTensor) -> keras.KerasTensor:
    """Additive attention gate (Oktay et al. 2018) weighting ``skip`` by a map computed with ``gating``.

    ``gating`` is the coarser decoder feature (half the spatial size of ``skip``); the per-pixel
    coefficients are computed at that resolution and upsampled back onto the skip connection. As in
    the paper, the intermediate width is half the skip's channels and the skip is brought to the
    gating resolution by a 2x2 convolution with stride 2, which sees every skip pixel.
    """
    inter = max(skip.shape[-1] // 2, 1)
    theta_x = layers.Conv2D(inter, 2, strides=2, padding="same", use_bias=False)(skip)
    phi_g = layers.Conv2D(inter, 1, padding="same")(gating)
    f = layers.ReLU()(layers.Add()([theta_x, phi_g]))
    psi = layers.Conv2D(1, 1, padding="same", activation="sigmoid")(f)
    return layers.Multiply()([skip, layers.UpSampling2D(2)(psi)])


def encoder_step(
    x: keras.KerasTensor, filters: int, block: Block, norm: str, dropout: float
) -> tuple[keras.KerasTensor, keras.KerasTensor]:
    """One contracting level: block, then 2x2 max-pool. Returns (skip features, pooled features)."""
    skip = block(x, filters, norm, dropout)
    return skip, layers.MaxPooling2D(2)(skip)


def decoder_step(
    x: keras.KerasTensor,
    skip: keras.KerasTensor,
    filters: int,
    block: Block,
    norm: str,
    dropout: float,
    gate: bool,
) -> keras.KerasTensor:
    """One expanding level: 2x2 transposed-conv upsampling, concat the (optionally gated) skip, block."""
    if gate:
        skip = attention_gate(skip, x)
    up = layers.Conv2DTranspose(filters, 2, strides=2, padding="same")(x)
    return block(layers.Concatenate()([up, skip]), filters, norm, dropout)
