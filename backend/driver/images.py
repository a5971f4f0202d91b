"""Proof-of-delivery images: a photo from the camera or a signature drawn on screen, as the
phone sent it (hostile until here), decoded with Pillow within bounds and re-encoded without
any of its metadata. Pure (bytes in, bytes out).

A phone's photo carries EXIF: the GPS position (the customer's address), the time, the
phone's make and serial. Re-encoding from the pixels alone drops all of it (EXIF, XMP, ICC,
comments, PNG text chunks); the EXIF orientation is applied to the pixels first so the photo
stays upright. Decoding is bounded before it starts: the upload's size, the format (JPEG,
PNG, WebP only: the ones a phone's camera and a canvas produce) and the pixel count read from
the header (Pillow's decompression-bomb check, at our own limit).
"""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass

KINDS = ("photo", "signature")
# An upload as the phone sends it: a 12-megapixel JPEG is 3–6 MB; the app scales photos down
# before it queues them, so this only bounds what a hostile client may make us read.
MAX_UPLOAD_BYTES = 12 * 1024 * 1024
# Pixels decoded at most (read from the header before decoding): a 50-megapixel camera; a
# "bomb" of a few KB claiming more is refused before any memory is spent on it.
MAX_PIXELS = 50_000_000
# The longest side kept: enough to read a house number or a label on a parcel; a photo is
# then ~150–400 KB as JPEG.
PHOTO_MAX_SIDE = 1600
# A signature's longest side: a phone's screen width at 2x.
SIGNATURE_MAX_SIDE = 1200
# JPEG quality of the stored photos: 80 keeps text legible at a third of quality 95's size.
PHOTO_QUALITY = 80
# What Pillow may open: the formats cameras and canvases produce, nothing else (no TIFF,
# PSD, EPS … and their parsers' attack surface).
FORMATS = ("JPEG", "PNG", "WEBP")


class ImageRefused(ValueError):
    """Not an image we take (the message says why)."""


@dataclass(frozen=True)
class StoredImage:
    data: bytes
    media_type: str
    width: int
    height: int


def clean_image(raw: bytes, kind: str) -> StoredImage:
    """The image re-encoded from its pixels only: a photo as JPEG (at most PHOTO_MAX_SIDE), a
    signature as PNG (at most SIGNATURE_MAX_SIDE, on white where it was transparent)."""
    from PIL import Image, ImageOps  # here: a backend starts without Pillow

    if kind not in KINDS:
        raise ImageRefused(f"kind: one of {', '.join(KINDS)}")
    if not raw:
        raise ImageRefused("the image is empty")
    if len(raw) > MAX_UPLOAD_BYTES:
        raise ImageRefused(f"the image is larger than {MAX_UPLOAD_BYTES // 1024 // 1024} MiB")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(raw), formats=FORMATS)
            w, h = im.size
            if w * h > MAX_PIXELS:
                raise ImageRefused(f"the image has more than {MAX_PIXELS:,} pixels")
            im.load()
    except ImageRefused:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageRefused(f"the image has more than {MAX_PIXELS:,} pixels") from None
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise ImageRefused(f"not a JPEG, PNG or WebP image ({type(exc).__name__})") from None
    im = ImageOps.exif_transpose(im)  # upright as the camera meant it, then EXIF goes
    side = PHOTO_MAX_SIDE if kind == "photo" else SIGNATURE_MAX_SIDE
    if max(im.size) > side:
        im.thumbnail((side, side), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    if kind == "photo":
        im = im.convert("RGB")  # a fresh image: no info, no EXIF, no ICC profile
        clean = Image.new("RGB", im.size)
        clean.paste(im)
        clean.save(out, "JPEG", quality=PHOTO_QUALITY, optimize=True)
        media = "image/jpeg"
    else:
        rgba = im.convert("RGBA")
        clean = Image.new("RGB", rgba.size, (255, 255, 255))
        clean.paste(rgba, mask=rgba.getchannel("A"))
        clean.convert("L").save(out, "PNG", optimize=True)
        media = "image/png"
    return StoredImage(out.getvalue(), media, clean.width, clean.height)


def file_id(driver_id: str, job_id: str | None, kind: str, data: bytes) -> str:
    """A stored image's id: the same upload (re-sent after a lost answer) gets the same id,
    so storing it is idempotent; "f" + 40 hex digits of SHA-256."""
    h = hashlib.sha256()
    for part in (driver_id, job_id or "", kind):
        h.update(part.encode() + b"\0")
    h.update(data)
    return "f" + h.hexdigest()[:40]
