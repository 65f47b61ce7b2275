"""The fast input path draws the same augmentation distribution as timm's (torchvision + timm transform,
timm's Mixup and RandomErasing), within the stated tolerances:

- crop area and aspect ratio: two-sample Kolmogorov-Smirnov p > 1e-3 over 20,000 draws;
- RandAugment: every op's frequency within 0.01, magnitude mean within 0.02 and std within 0.02;
- erasing: the rate within 0.02 of timm's and the erased area fraction KS p > 1e-3;
- mixup/cutmix: the cutmix share within 0.03, lambda KS p > 1e-3 for both;
- pixels: per-channel mean and std of the normalised images within 0.05 (0.08 with RandAugment, whose
  Invert makes single draws vary more), real-photo JPEGs each drawn 25 times.
"""

import collections
import math
import random

import jax
import numpy as np
import pytest
import torch
from scipy import stats

from convnext_jax.bench.data_bench import make_imagenet_like
from convnext_jax.data import MixupCutmix, create_loader, make_source, train_transforms
from convnext_jax.data import randaugment as ours_ra
from convnext_jax.data.on_device import erase_boxes, normalize
from convnext_jax.data.transforms import IMAGENET_MEAN, IMAGENET_STD, random_resized_crop_box

AUTO_AUGMENT = "rand-m9-mstd0.5-inc1-mmax9"


def _ks(a, b) -> float:
    return stats.ks_2samp(a, b).pvalue


def test_crop_area_and_aspect_match_torchvision():
    from torchvision.transforms import RandomResizedCrop

    torch.manual_seed(0)
    image = torch.zeros(3, 375, 500)
    rng = np.random.default_rng(0)
    ours, theirs = [], []
    for _ in range(20000):
        top, left, h, w = random_resized_crop_box(375, 500, (0.08, 1.0), (3 / 4, 4 / 3), rng)
        ours.append((h * w / (375 * 500), math.log(w / h)))
        top, left, h, w = RandomResizedCrop.get_params(image, [0.08, 1.0], [3 / 4, 4 / 3])
        theirs.append((h * w / (375 * 500), math.log(w / h)))
    ours, theirs = np.array(ours), np.array(theirs)
    assert _ks(ours[:, 0], theirs[:, 0]) > 1e-3
    assert _ks(ours[:, 1], theirs[:, 1]) > 1e-3


def test_randaugment_ops_and_magnitudes_match_timm(monkeypatch):
    from PIL import Image
    from timm.data.auto_augment import rand_augment_transform

    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8))
    draws = 20000
    seen_ours: list[tuple[str, float]] = []
    for name, op in list(ours_ra.OPS.items()):

        def recording(im, m, rng, fill, name=name, op=op):
            seen_ours.append((name, m))
            return op(im, m, rng, fill)

        monkeypatch.setitem(ours_ra.OPS, name, recording)
    augment, rng = ours_ra.rand_augment_from_string(AUTO_AUGMENT), np.random.default_rng(0)
    for _ in range(draws):
        augment.random_map({"image": image}, rng)

    seen_timm: list[tuple[str, float]] = []
    timm_ra = rand_augment_transform(AUTO_AUGMENT, {"img_mean": (124, 116, 104)})
    for op in timm_ra.ops:
        level_fn = op.level_fn or (lambda m, h: ())

        def recording_level(magnitude, hparams, op=op, level_fn=level_fn):
            seen_timm.append((op.name, magnitude))
            return level_fn(magnitude, hparams)

        op.level_fn = recording_level
    random.seed(0)
    np.random.seed(0)
    for _ in range(draws):
        timm_ra(image)

    assert set(ours_ra.OPS) == {op.name for op in timm_ra.ops}
    count_ours = collections.Counter(n for n, _ in seen_ours)
    count_timm = collections.Counter(n for n, _ in seen_timm)
    for name in ours_ra.OPS:  # per image: 2 layers, each applied with probability 0.5
        assert abs(count_ours[name] - count_timm[name]) / draws < 0.01, name
    assert abs(len(seen_ours) - len(seen_timm)) / draws < 0.02
    m_ours, m_timm = np.array([m for _, m in seen_ours]), np.array([m for _, m in seen_timm])
    assert abs(m_ours.mean() - m_timm.mean()) < 0.02 and abs(m_ours.std() - m_timm.std()) < 0.02


def test_random_erasing_matches_timm():
    from timm.data.random_erasing import RandomErasing

    count, height, width = 4000, 32, 48
    apply, top, left, h, w = (np.asarray(v) for v in erase_boxes(jax.random.key(0), count, height, width, 0.25))
    ours_area = (h * w / (height * width))[apply]
    erasing = RandomErasing(probability=0.25, mode="pixel", device="cpu")
    torch.manual_seed(0)
    random.seed(0)
    areas = []
    for _ in range(count):
        erased = erasing(torch.zeros(3, height, width))
        areas.append(float((erased != 0).any(0).float().mean()))
    areas = np.array(areas)
    theirs_area = areas[areas > 0]
    assert abs(apply.mean() - len(theirs_area) / count) < 0.02
    # timm's noise can be exactly 0 at a pixel (never in float32 practice), so areas compare directly
    assert _ks(ours_area, theirs_area) > 1e-3


def test_mixup_cutmix_match_timm():
    from timm.data.mixup import Mixup, cutmix_bbox_and_lam

    draws = 4000
    mix = MixupCutmix(10, 0.8, 1.0, label_smoothing=0.0)
    draw = jax.vmap(lambda key: mix.params(key, 32, 40))(jax.random.split(jax.random.key(0), draws))
    lam, cutmix = np.asarray(draw["lam"]), np.asarray(draw["cutmix"])
    ours = {"mixup": lam[~cutmix], "cutmix": lam[cutmix]}
    theirs = {"mixup": [], "cutmix": []}
    timm_mix = Mixup(mixup_alpha=0.8, cutmix_alpha=1.0, label_smoothing=0.0, num_classes=10)
    np.random.seed(0)
    for _ in range(draws):
        lam, use_cutmix = timm_mix._params_per_batch()
        if use_cutmix:
            _, lam = cutmix_bbox_and_lam((2, 3, 32, 40), lam, correct_lam=True)
        theirs["cutmix" if use_cutmix else "mixup"].append(lam)
    share = len(ours["cutmix"]) / draws
    assert abs(share - len(theirs["cutmix"]) / draws) < 0.03
    assert _ks(ours["mixup"], theirs["mixup"]) > 1e-3
    assert _ks(ours["cutmix"], theirs["cutmix"]) > 1e-3


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    return make_imagenet_like(str(tmp_path_factory.mktemp("photos")), 48)


@pytest.mark.parametrize("auto_augment, tolerance", [(None, 0.05), (AUTO_AUGMENT, 0.08)])
def test_pixel_statistics_match_timm(photos, auto_augment, tolerance):
    """Our path (reduced-scale JPEG decoding, PIL ops, uint8, normalised on the device) against
    timm's transform on the same files (each drawn 25 times), at 48 px, without erasing."""
    from timm.data import create_transform
    from torchvision.datasets import ImageFolder

    source = make_source(f"folder:{photos}", "train")
    epochs = 25
    loader = iter(
        create_loader(
            source,
            batch_size=len(source),
            shuffle=True,
            seed=0,
            transforms=train_transforms(48, auto_augment=auto_augment),
        )
    )
    ours = np.concatenate(
        [np.asarray(normalize(next(loader)["image"], IMAGENET_MEAN, IMAGENET_STD)) for _ in range(epochs)]
    )
    transform = create_transform(
        48, is_training=True, auto_augment=auto_augment, color_jitter=0.0, interpolation="bicubic"
    )
    dataset = ImageFolder(f"{photos}/train", transform=transform)
    torch.manual_seed(0)
    random.seed(0)
    np.random.seed(0)
    theirs = np.stack([dataset[i % len(dataset)][0].numpy().transpose(1, 2, 0) for i in range(len(ours))])
    np.testing.assert_allclose(ours.mean((0, 1, 2)), theirs.mean((0, 1, 2)), atol=tolerance)
    np.testing.assert_allclose(ours.std((0, 1, 2)), theirs.std((0, 1, 2)), atol=tolerance)
