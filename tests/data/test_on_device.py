"""The device input stage: normalisation of uint8 pixels and timm's random erasing, in the step."""

import jax
import jax.numpy as jnp
import numpy as np

from convnext_jax.data.on_device import InputStage, erase_boxes, normalize, random_erasing


def test_normalize_on_and_off():
    images = jnp.full((1, 2, 2, 3), 255, jnp.uint8)
    assert np.allclose(normalize(images, None, None), 1.0)
    normed = normalize(images, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    assert normed.dtype == jnp.float32 and np.allclose(normed, 2.0)


def test_random_erasing_replaces_one_rectangle_per_chosen_image():
    x = jnp.zeros((64, 32, 32, 3), jnp.float32)
    out = np.asarray(random_erasing(x, jax.random.key(3), prob=1.0))
    for image in out:
        erased = np.any(image != 0, axis=-1)
        rows, cols = np.where(erased)
        assert 0.015 < erased.mean() < 0.34
        assert erased[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1].all()  # a filled rectangle
    np.testing.assert_array_equal(random_erasing(x, jax.random.key(3), prob=0.0), x)


def test_float_batches_pass_through_and_uint8_are_prepared():
    stage = InputStage((0.5,) * 3, (0.5,) * 3, re_prob=1.0)
    floats = {"image": jnp.ones((2, 8, 8, 3), jnp.float32), "label": jnp.zeros(2)}
    assert stage.train(floats, jax.random.key(0))["image"] is floats["image"]
    pixels = {"image": jnp.full((2, 8, 8, 3), 255, jnp.uint8)}
    assert np.allclose(stage.eval(pixels)["image"], 1.0)
    trained = np.asarray(stage.train(pixels, jax.random.key(0))["image"])
    assert (trained != 1.0).any() and np.isclose(trained, 1.0).any()


def test_erase_boxes_fit_strictly_inside():
    apply, top, left, h, w = (np.asarray(v) for v in erase_boxes(jax.random.key(0), 2000, 24, 40, prob=0.5))
    assert 0.45 < apply.mean() < 0.55
    assert (h < 24).all() and (w < 40).all() and (top + h <= 24).all() and (left + w <= 40).all()
