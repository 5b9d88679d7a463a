"""Bounds that both the command line and the study file check, kept where reading them costs nothing
(`optimize --help` must not wait for Optuna to load)."""

MAX_SEED = 2**32 - 1
"""The largest seed numpy's and scikit-learn's generators take (seeds run from 0)."""
MIN_SYNTHETIC_SIZE = 8
"""The smallest synthetic image `data.make_microbeads` draws beads on."""
MAX_IMAGE_SIZE = 4096
"""The largest image side, in px, a study trains on (`[data] image_size`, `[data.synthetic] size`, `--image-size`,
`make-data --size`)."""
IMAGE_SIZE_REASON = "one 512x512 image already takes ~1 GiB of GPU memory in training at base_filters 64"
MAX_SYNTHETIC_PIXELS = 2**30
"""The most pixels `[data.synthetic]` may generate: 4 GiB per float32 array (images, masks and their split
copies each hold one)."""
MAX_PREDICT_BATCH = 1024
"""The most tiles `optimize predict --batch-size` predicts at once: 1024 tiles of 512² float32 are 1 GiB on the
host (a batch of fewer tiles is padded up to a power of two only)."""
MAX_WORKERS = 256
"""The most worker processes one command starts (`--workers`, `--trials-per-gpu`): each loads Keras and its own
copy of the data."""
