"""Architecture names mapped to builders, and ``build``, the single entry point used by the search."""

from __future__ import annotations

from functools import partial

import keras

from models._blocks import conv_block, residual_block
from models._names import ARCHITECTURES
from models._unet import build_unet

_BUILDERS = {
    "unet": partial(build_unet, block=conv_block, gate_skips=False),
    "resunet": partial(build_unet, block=residual_block, gate_skips=False),
    "attention_unet": partial(build_unet, block=conv_block, gate_skips=True),
    "attention_resunet": partial(build_unet, block=residual_block, gate_skips=True),
}


def build(
    name: str,
    input_shape: tuple[int, int, int] = (512, 512, 1),
    base_filters: int = 64,
    depth: int = 4,
    dropout: float = 0.0,
    norm: str = "batch",
) -> keras.Model:
    """Build the architecture ``name`` (one of ``ARCHITECTURES``): one sigmoid float32 output channel.

    Raises ValueError for an unknown name or norm, dropout outside [0, 1), or an input size that
    is not a multiple of ``2**depth``.
    """
    if name not in _BUILDERS:
        raise ValueError(f"unknown architecture {name!r}; known: {', '.join(ARCHITECTURES)}")
    return _BUILDERS[name](
        name=name,
        input_shape=input_shape,
        base_filters=base_filters,
        depth=depth,
        dropout=dropout,
        norm=norm,
    )
