"""Reading images of any mode into RGB, and telling usable files from bad ones."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

# Formats we train on (torchvision's ImageFolder set). GIFs are left out as ImageFolder does:
# they are usually animations or placeholders ("imageNotFound.gif").
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".pgm", ".pbm", ".bmp", ".tif", ".tiff", ".webp")
# The only decoders PIL may use, whatever a file's name says: a PostScript file named .jpg must never
# reach the EPS plugin (which runs Ghostscript where it is installed).
ALLOWED_FORMATS = ("JPEG", "MPO", "PNG", "WEBP", "BMP", "TIFF", "PPM", "GIF")
ImageFile.LOAD_TRUNCATED_IMAGES = False


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert any PIL mode (L, P, RGBA, CMYK, I;16, I, F, LA) to 8-bit RGB, upright."""
    img = ImageOps.exif_transpose(img)
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        if mode.startswith("I;16") and hi <= 65535:
            lo, hi = 0.0, 65535.0 if hi > 255 else 255.0
        scaled = (arr - lo) / max(hi - lo, 1e-12) * 255.0
        return Image.fromarray(np.clip(scaled, 0, 255).astype(np.uint8), "L").convert("RGB")
    if mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
        mode = "RGBA"
    if mode in ("RGBA", "LA", "PA"):
        # Composite onto white: transparent pixels have arbitrary colour values underneath.
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def open_image(source) -> Image.Image:
    """``Image.open`` restricted to the allowed formats (by content, not by name)."""
    Image.init()  # registers every plugin once; the allow-list then names the ones this PIL has
    return Image.open(source, formats=[f for f in ALLOWED_FORMATS if f in Image.OPEN])


def upright_size(source) -> tuple[int, int]:
    """(width, height) of an image as the decoder shows it — its EXIF orientation applied — from the header alone:
    the one frame for boxes, masks and drawing. An image over Pillow's pixel limit raises OSError."""
    try:
        with open_image(source) as im:
            w, h = im.size
            return (h, w) if im.getexif().get(0x0112, 1) in (5, 6, 7, 8) else (w, h)
    except Image.DecompressionBombError as exc:
        raise OSError(str(exc)) from None


def load_rgb(path) -> Image.Image:
    """Open, decode fully and convert an image file (or file object) to RGB."""
    with open_image(path) as img:
        img.load()
        return to_rgb(img)


def decode_checked(source, draft: bool = False) -> Image.Image:
    """Decode ``source`` (a path or file object) under the one image-safety policy of every path — training,
    predict, serve: allowed formats only, no decompression bombs, no animations. Raises ``ValueError`` with
    the reason. ``draft`` decodes JPEGs at 1/8 scale (every byte is still read)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with open_image(source) as img:
                if getattr(img, "n_frames", 1) > 1 and img.format in ("GIF", "PNG", "WEBP"):
                    raise ValueError("animated image; save one frame as a still image to use it")
                if draft and img.format == "JPEG":
                    img.draft(None, (1, 1))
                img.load()
                return to_rgb(img)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ValueError(f"image is larger than the decompression-bomb limit ({Image.MAX_IMAGE_PIXELS} pixels)") from None
    except UnidentifiedImageError:
        raise ValueError("cannot be decoded as an image (wrong extension, damaged file, or a format other than "
                         f"{', '.join(ALLOWED_FORMATS)})") from None
    except (OSError, SyntaxError) as exc:  # truncated data, broken headers
        raise ValueError(f"damaged image ({exc})") from None


def check_image(path: Path) -> str | None:
    """Return None when ``path`` is a usable still image, else the reason it is not."""
    suffix = path.suffix.lower()
    if suffix == ".gif":
        return "GIF files are not used (often animations or placeholders); convert it to PNG/JPEG to use it"
    if suffix not in IMAGE_EXTENSIONS:
        return f"not an image file type ({suffix or 'no extension'}); expected one of {', '.join(IMAGE_EXTENSIONS)}"
    try:
        if path.stat().st_size == 0:
            return "empty file (0 bytes)"
        # Decode at 1/8 scale for JPEGs: every byte is still read (truncation is still caught), at about a
        # fifth of the cost of a full decode.
        decode_checked(path, draft=True)
    except ValueError as exc:
        return str(exc)
    except OSError as exc:
        return f"cannot be read ({exc})"
    return None
