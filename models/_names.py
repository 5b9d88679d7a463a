"""The architecture and normalization names a study may choose, kept free of Keras so that checking a
study file or reading a finished study never loads it."""

ARCHITECTURES: tuple[str, ...] = ("unet", "resunet", "attention_unet", "attention_resunet")
NORMS: tuple[str, ...] = ("batch", "group", "none")
