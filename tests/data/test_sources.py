"""Sources: embedded digits, synthetic, image folders with broken and unusual files, TFDS errors."""

import logging
import os

import numpy as np
import pytest
from PIL import Image

from convnext_jax.data import (
    BadImageError,
    DigitsSource,
    ImageFolderSource,
    SyntheticSource,
    create_loader,
    eval_transforms,
    load_image,
    make_source,
)


def test_digits_is_real_deterministic_and_split():
    train, val = DigitsSource("train", 32), DigitsSource("val", 32)
    assert len(train) + len(val) == 1797 and len(val) == 360
    record = train[0]
    assert record["image"].shape == (32, 32, 3) and record["image"].dtype == np.uint8
    assert record["image"].max() > 200 and record["image"].min() == 0  # real strokes on a dark background
    assert set(train._labels) == set(range(10)) == set(val._labels)
    np.testing.assert_array_equal(DigitsSource("train", 32)[5]["image"], train[5]["image"])
    with pytest.raises(ValueError, match="splits 'train' and 'val'"):
        DigitsSource("test")


def test_synthetic_is_a_function_of_the_index():
    src = SyntheticSource(num_examples=10, image_size=16, num_classes=3)
    np.testing.assert_array_equal(src[3]["image"], src[3]["image"])
    assert not np.array_equal(src[3]["image"], src[4]["image"])
    assert src[3]["image"].shape == (16, 16, 3) and 0 <= src[3]["label"] < 3


def _save(path, image):
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "data"
    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 255, (20, 24, 3), dtype=np.uint8))
    _save(root / "train" / "cat" / "a.jpg", rgb)
    _save(root / "train" / "cat" / "gray.png", rgb.convert("L"))
    _save(root / "train" / "cat" / "la.png", rgb.convert("LA"))
    _save(root / "train" / "cat" / "palette.png", rgb.convert("P"))
    _save(root / "train" / "dog" / "rgba.png", rgb.convert("RGBA"))
    _save(root / "train" / "dog" / "cmyk.jpg", rgb.convert("CMYK"))
    _save(root / "train" / "dog" / "deep.png", Image.fromarray((rng.integers(0, 65535, (9, 7))).astype(np.uint16)))
    _save(root / "train" / "dog" / "tiny.png", Image.new("RGB", (1, 1), (255, 0, 0)))
    (root / "train" / "dog" / "notes.txt").write_text("not an image")
    (root / "train" / "bird").mkdir()  # empty class folder
    full = (root / "train" / "cat" / "a.jpg").read_bytes()
    (root / "train" / "dog" / "truncated.jpg").write_bytes(full[: len(full) // 2])
    (root / "train" / "dog" / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    _save(root / "val" / "cat" / "v.jpg", rgb)
    _save(root / "val" / "dog" / "v.png", rgb)
    return root


def test_every_mode_decodes_to_rgb_uint8(folder):
    for name in [
        "cat/a.jpg",
        "cat/gray.png",
        "cat/la.png",
        "cat/palette.png",
        "dog/rgba.png",
        "dog/cmyk.jpg",
        "dog/deep.png",
        "dog/tiny.png",
    ]:
        image = load_image(folder / "train" / name)
        assert image.ndim == 3 and image.shape[-1] == 3 and image.dtype == np.uint8, name
    deep = load_image(folder / "train" / "dog" / "deep.png")
    assert deep.shape == (9, 7, 3) and deep.max() > 128  # 16-bit scaled down, not clipped to 255


def test_folder_source_classes_labels_and_reports(folder, caplog):
    with caplog.at_level(logging.WARNING):
        src = ImageFolderSource(folder / "train")
    assert src.class_names == ["bird", "cat", "dog"] and src.num_classes == 3
    assert len(src) == 10  # 4 cat + 6 dog images (txt ignored); bird is empty
    assert "without images" in caplog.text and "bird" in caplog.text
    assert "ignored 1 file" in caplog.text


def test_bad_images_are_skipped_with_a_log_or_raise(folder, caplog):
    src = ImageFolderSource(folder / "train")
    corrupt = [i for i, (p, _) in enumerate(src.samples) if p.endswith(("truncated.jpg", "corrupt.png"))]
    assert len(corrupt) == 2
    # bad headers (found when the source opens the file) and bad pixels (found when decoded): both skipped
    loader = create_loader(src, batch_size=1, transforms=eval_transforms(16), shuffle=False, num_epochs=1)
    records = list(loader)
    assert len(records) == len(src) and all(r["image"].shape == (1, 16, 16, 3) for r in records)
    skipped = {p for r in records for p in str(r["skipped"][0]).split("\n") if p}  # named for the training process
    assert {os.path.basename(p) for p in skipped} == {"truncated.jpg", "corrupt.png"}
    strict = ImageFolderSource(folder / "train", on_bad_image="error")
    with pytest.raises(BadImageError, match="(truncated.jpg|corrupt.png).*data.on_bad_image=skip") as error:
        list(create_loader(strict, batch_size=1, transforms=eval_transforms(16), shuffle=False, num_epochs=1))
    assert str(error.value).count("on_bad_image") == 1  # the hint once, whichever layer found the file


def test_class_sets_must_agree(folder):
    train = ImageFolderSource(folder / "train")
    val = ImageFolderSource(folder / "val", class_names=train.class_names)
    assert {r["label"] for r in (val[0], val[1])} == {train.class_names.index("cat"), train.class_names.index("dog")}
    (folder / "val" / "fish").mkdir()
    Image.new("RGB", (4, 4)).save(folder / "val" / "fish" / "f.png")
    with pytest.raises(ValueError, match="fish"):
        ImageFolderSource(folder / "val", class_names=train.class_names)


def test_missing_and_empty_paths(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ImageFolderSource(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no class subfolders"):
        ImageFolderSource(tmp_path / "empty")
    (tmp_path / "empty" / "a").mkdir()
    with pytest.raises(ValueError, match="no image files"):
        ImageFolderSource(tmp_path / "empty")


def test_make_source_specs(folder, tmp_path):
    assert isinstance(make_source("embedded:digits", "val", image_size=32), DigitsSource)
    assert len(make_source("folder:" + str(folder), "train")) == 10
    assert make_source("synthetic", "train", image_size=8, num_examples=5)[0]["image"].shape == (8, 8, 3)
    with pytest.raises(ValueError, match="unknown data source"):
        make_source("imagenet", "train")
    with pytest.raises(FileNotFoundError, match="(?s)cannot be opened.*tfds build mnist"):
        make_source("tfds:mnist", "train", data_dir=str(tmp_path / "tfds"))


def test_tfds_source_reads_encoded_images_lazily(tmp_path):
    """TFDS records hold the encoded image (SkipDecoding): it is opened lazily and decoded by the
    pipeline (at a reduced scale when a crop allows); decoded arrays (other sources) still work."""
    import io

    import tensorflow_datasets as tfds

    from convnext_jax.data.images import EncodedImage, decode

    def encoded(value, fmt):
        buffer = io.BytesIO()
        Image.fromarray(np.full((28, 28), value, np.uint8)).save(buffer, format=fmt)
        return buffer.getvalue()

    records = [{"image": encoded(10 * i, "PNG"), "label": i % 10} for i in range(12)]
    asked = {}

    def data_source(*args, **kwargs):
        asked.update(kwargs)
        return records

    with tfds.testing.mock_data(policy=tfds.testing.MockPolicy.USE_CODE, as_data_source_fn=data_source):
        src = make_source("tfds:mnist", "train", data_dir=str(tmp_path))
        assert len(src) == 12 and src.num_classes == 10
        record = src[3]
    assert isinstance(asked["decoders"]["image"], tfds.decode.SkipDecoding)
    assert isinstance(record["image"], EncodedImage) and record["label"] == 3  # only the header was read
    pixels = np.asarray(decode(record["image"]))
    assert pixels.shape == (28, 28, 3) and (pixels == 30).all()  # gray -> RGB
    records[5] = {"image": b"not an image", "label": 5}
    with tfds.testing.mock_data(policy=tfds.testing.MockPolicy.USE_CODE, as_data_source_fn=data_source):
        with pytest.raises(BadImageError, match=r"tfds:mnist/train\[5\]"):
            make_source("tfds:mnist", "train", data_dir=str(tmp_path))[5]
        records[:] = [{"image": np.zeros((28, 28, 1), np.uint8), "label": 1}]
        array = make_source("tfds:mnist", "train", data_dir=str(tmp_path))[0]["image"]
    assert array.shape == (28, 28, 3) and array.dtype == np.uint8
