"""Input pipelines: sources (embedded digits, synthetic, image folders, TFDS), transforms, grain loaders."""

from convnext_jax.data.images import BadImageError, load_image, to_rgb
from convnext_jax.data.pipeline import create_loader, eval_transforms, train_transforms
from convnext_jax.data.sources import DigitsSource, ImageFolderSource, SyntheticSource, TfdsSource, make_source

__all__ = [
    "BadImageError", "DigitsSource", "ImageFolderSource", "SyntheticSource", "TfdsSource", "create_loader",
    "eval_transforms", "load_image", "make_source", "to_rgb", "train_transforms",
]
