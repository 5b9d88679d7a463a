"""One generic U-Net builder; the four architectures differ only in block kind and skip gating."""

from __future__ import annotations

import keras
from keras import layers

from models._blocks import Block, check_norm, decoder_step, encoder_step


def _check_input_size(input_shape: tuple[int, int, int], depth: int) -> None:
    """Each level halves the size, so height and width must be multiples of 2**depth."""
    step = 2**depth
    height, width = input_shape[:2]
    if height % step == 0 and width % step == 0:
        return

    def snap(size: int, up: bool) -> int:
        return size if size % step == 0 else (size // step + up) * step

    candidates = [(snap(height, up), snap(width, up)) for up in (False, True)]
    options = [str(h) if height == width else f"{h}x{w}" for h, w in candidates if h and w]
    raise ValueError(
        f"input size {height}x{width} is not divisible by 2**{depth} = {step}; use e.g. {' or '.join(options)}"
    )


def build_unet(
    name: str,
    block: Block,
    gate_skips: bool,
    input_shape: tuple[int, int, int] = (512, 512, 1),
    base_filters: int = 64,
    depth: int = 4,
    dropout: float = 0.0,
    norm: str = "batch",
) -> keras.Model:
    """Build a U-Net (Ronneberger et al. 2015) with ``depth`` levels around a bridge.

    ``block`` builds every encoder/decoder/bridge stage (conv or residual block); ``gate_skips`` adds
    attention gates on the skip connections. The output is one sigmoid channel kept in float32 so
    losses stay stable under mixed precision.
    """
    if len(input_shape) != 3:
        raise ValueError(f"input_shape must be (height, width, channels), got {input_shape!r}")
    if depth < 1 or base_filters < 1:
        raise ValueError(f"depth and base_filters must be >= 1, got {depth} and {base_filters}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")
    check_norm(norm)
    _check_input_size(input_shape, depth)

    inputs = keras.Input(shape=input_shape)
    x, skips = inputs, []
    for level in range(depth):
        skip, x = encoder_step(x, base_filters * 2**level, block, norm, dropout)
        skips.append(skip)
    x = block(x, base_filters * 2**depth, norm, dropout)
    for level in reversed(range(depth)):
        x = decoder_step(x, skips[level], base_filters * 2**level, block, norm, dropout, gate_skips)
    x = layers.Conv2D(1, 1)(x)
    outputs = layers.Activation("sigmoid", dtype="float32")(x)
    return keras.Model(inputs, outputs, name=name)
