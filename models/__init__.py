"""U-Net family for microbead segmentation: ``build(name, ...)`` for each name in ``ARCHITECTURES``."""

from models._blocks import NORMS
from models._registry import ARCHITECTURES, build

__all__ = ["ARCHITECTURES", "NORMS", "build"]
