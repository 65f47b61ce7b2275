"""Input pipelines: sources (embedded digits, synthetic, image folders, TFDS), transforms, grain loaders."""

from convnext_jax.data.device import shard_batch
from convnext_jax.data.images import BadImageError, load_image, to_rgb
from convnext_jax.data.mixup import MixupCutmix, smooth_one_hot
from convnext_jax.data.pipeline import create_loader, eval_transforms, train_transforms
from convnext_jax.data.randaugment import RandAugment, rand_augment_from_string
from convnext_jax.data.sources import DigitsSource, ImageFolderSource, SyntheticSource, TfdsSource, make_source

__all__ = [
    "BadImageError",
    "DigitsSource",
    "ImageFolderSource",
    "MixupCutmix",
    "RandAugment",
    "SyntheticSource",
    "TfdsSource",
    "create_loader",
    "eval_transforms",
    "load_image",
    "make_source",
    "rand_augment_from_string",
    "shard_batch",
    "smooth_one_hot",
    "to_rgb",
    "train_transforms",
]
