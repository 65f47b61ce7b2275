"""Decode image files into RGB uint8 arrays, whatever their mode."""

from __future__ import annotations

import os

import numpy as np
from PIL import Image, ImageFile

from convnext_jax.errors import DataError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


class BadImageError(DataError):
    """An image file that cannot be decoded (corrupt, truncated, not an image); `path` names it."""

    def __init__(self, message: str, path: str = ""):
        super().__init__(message)
        self.path = path


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any PIL mode to RGB: L/LA/P/RGBA (alpha composited on black), CMYK, 16-bit, float."""
    if image.mode == "RGB":
        return image
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        array = np.asarray(image, dtype=np.float64)
        peak = 65535.0 if image.mode.startswith("I;16") or array.max() > 255 else 255.0
        image = Image.fromarray(np.clip(array / peak * 255.0 + 0.5, 0, 255).astype(np.uint8), mode="L")
    elif image.mode == "F":
        array = np.asarray(image, dtype=np.float64)
        image = Image.fromarray(np.clip(array * (255.0 if array.max() <= 1.0 else 1.0), 0, 255).astype(np.uint8))
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        image = image.convert("RGBA")
        background = Image.new("RGBA", image.size, (0, 0, 0, 255))
        image = Image.alpha_composite(background, image)
    return image.convert("RGB")


def load_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as an (H, W, 3) uint8 array; BadImageError names the file on failure."""
    previous = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = False  # a truncated file is an error, not silently grey pixels
    try:
        with Image.open(path) as image:
            image.load()
            return np.asarray(to_rgb(image), dtype=np.uint8)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise BadImageError(f"cannot decode image {os.fspath(path)}: {e}", os.fspath(path)) from e
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = previous


class EncodedImage:
    """An image file's bytes with only its header parsed (`size` = (width, height), `format`); the
    pixels are decoded on demand by `decode_array`, possibly at a reduced DCT scale.

    JPEGs decode with libjpeg-turbo through simplejpeg straight into a NumPy array (the same pixels
    as Pillow, which wraps the same library, without Pillow's per-image objects and copy); other
    formats, CMYK JPEGs and files simplejpeg rejects decode with Pillow, which decides whether a
    file is bad."""

    __slots__ = ("data", "name", "size", "format", "_colorspace")

    def __init__(self, data: bytes, name: str):
        self.data, self.name, self._colorspace = data, name, None
        if data[:2] == b"\xff\xd8":
            try:
                import simplejpeg

                height, width, colorspace, _ = simplejpeg.decode_jpeg_header(data)
            except (ImportError, ValueError):
                pass
            else:
                limit = Image.MAX_IMAGE_PIXELS
                if limit and width * height > 2 * limit:  # what Pillow refuses to open (decompression bomb)
                    raise BadImageError(
                        f"cannot decode image {name}: {width}x{height} pixels exceeds the limit of "
                        f"{2 * limit} (Pillow's decompression-bomb check)",
                        name,
                    )
                self.size, self.format, self._colorspace = (width, height), "JPEG", colorspace
                return
        with self._open() as image:
            self.size, self.format = image.size, image.format

    def _open(self) -> Image.Image:
        import io

        try:
            return Image.open(io.BytesIO(self.data))
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
            reason = "not an image file Pillow can identify" if "cannot identify image file" in str(e) else e
            if not self.data:
                reason = "the file is empty"
            raise BadImageError(f"cannot decode image {self.name}: {reason}", self.name) from e

    def decode_array(self, reduction: int = 1) -> np.ndarray:
        """(H, W, 3) uint8 RGB pixels at 1/`reduction` scale (1, 2, 4, 8; JPEG only, as Pillow's draft
        mode: ceil(size / reduction)). BadImageError names the file when it cannot be decoded."""
        if self._colorspace in ("YCbCr", "Gray", "RGB"):
            import simplejpeg

            width, height = self.size
            try:
                return simplejpeg.decode_jpeg(
                    self.data,
                    colorspace="RGB",
                    min_factor=reduction,
                    min_height=-(-height // reduction),
                    min_width=-(-width // reduction),
                )
            except ValueError:
                pass  # let Pillow decide: it decodes what libjpeg only warns about, and names real damage
        return np.asarray(decode(self._open_named(), reduction))

    def decode_region(self, reduction: int, region: tuple[int, int, int, int]) -> np.ndarray | None:
        """Only the pixels region = (x0, y0, x1, y1) of the image at 1/`reduction` scale (the same
        values as in the whole decode, away from the region's edge), or None: not a JPEG libjpeg
        decodes to RGB, no region decoder here, or damage (decode the whole file to learn more)."""
        if self._colorspace not in ("YCbCr", "Gray", "RGB"):
            return None
        if self.data.rfind(b"\xff\xd9", max(0, len(self.data) - 64)) < 0:
            return None  # no end-of-image marker: truncated; the whole decode names it (damage below a crop would hide)
        from convnext_jax.data.jpeg_region import decode_region

        return decode_region(self.data, reduction, region)

    def is_colour_jpeg(self) -> bool:
        """A YCbCr/RGB JPEG (not greyscale, not CMYK): its bytes are a valid RGB training image as they are."""
        return self._colorspace in ("YCbCr", "RGB")

    def _open_named(self) -> Image.Image:
        image = self._open()
        image.info["source_name"] = self.name
        return image

    def __repr__(self) -> str:
        return f"EncodedImage({self.name!r}, {self.format}, {self.size[0]}x{self.size[1]})"


def open_image(data: bytes, name: str) -> EncodedImage:
    """A lazily decoded image: only the header is parsed here (a non-image fails now, naming `name`);
    the pixels are decoded by `decode` / `EncodedImage.decode_array`, possibly at a reduced scale."""
    return EncodedImage(data, name)


def reduction_for(image: Image.Image | EncodedImage, needed: tuple[int, int]) -> int:
    """The largest JPEG DCT scale-down (1, 2, 4 or 8) that keeps the image at least `needed`
    (width, height) pixels: decoding costs less and no resolution the resize needs is lost."""
    if getattr(image, "format", None) != "JPEG" or not isinstance(image, (Image.Image, EncodedImage)):
        return 1
    width, height = image.size
    for factor in (8, 4, 2):
        if width // factor >= needed[0] and height // factor >= needed[1]:
            return factor
    return 1


def decode(image: Image.Image | EncodedImage | np.ndarray, reduction: int = 1) -> Image.Image:
    """RGB pixels of a lazily opened image as a PIL image, decoded at 1/`reduction` scale (JPEG only;
    the caller scales its coordinates by the returned image's size). BadImageError names the file."""
    if isinstance(image, np.ndarray):
        return Image.fromarray(image)
    if isinstance(image, EncodedImage):
        return Image.fromarray(image.decode_array(reduction))
    try:
        if reduction > 1:
            width, height = image.size
            image.draft("RGB", (width // reduction, height // reduction))
        image.load()
        return to_rgb(image)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        name = image.info.get("source_name", "?")
        raise BadImageError(f"cannot decode image {name}: {e}", name) from e


def decode_array(image: Image.Image | EncodedImage | np.ndarray, reduction: int = 1) -> np.ndarray:
    """(H, W, 3) uint8 pixels of any image the sources give, at 1/`reduction` scale (JPEG only)."""
    if isinstance(image, np.ndarray):
        return image
    if isinstance(image, EncodedImage):
        return image.decode_array(reduction)
    return np.asarray(decode(image, reduction))
