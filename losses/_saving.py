"""What a saved compiled model may name from this package, for loading it with Keras.

A `.keras` file names its loss and metrics by their registered names (``microbead>...``). Keras looks
them up in its registry, which our decorators fill when their modules are imported; it never imports a
module outside Keras itself. Importing this module fills the registry, and ``CUSTOM_OBJECTS`` is the same
mapping for ``keras.models.load_model(path, custom_objects=...)``.
"""

import keras

from ._metrics import MaximisedMean, iou_at_05, jaccard
from ._registry import RegisteredLoss

CUSTOM_OBJECTS: dict[str, object] = {
    keras.saving.get_registered_name(obj): obj for obj in (RegisteredLoss, MaximisedMean, jaccard, iou_at_05)
}
"""Registered name -> class or function, for every object of this package a saved model may name."""
