"""Proof-of-delivery images (backend/driver/images.py): metadata gone, bounded, upright,
only the formats a phone makes."""

import io
import struct
import zlib

import pytest
from PIL import Image

from backend.driver.images import (
    MAX_PIXELS,
    MAX_UPLOAD_BYTES,
    ImageRefused,
    clean_image,
    file_id,
)


def _jpeg(size=(800, 400), exif=None) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (10, 200, 10)).save(out, "JPEG", **({"exif": exif} if exif else {}))
    return out.getvalue()


def test_a_photos_gps_and_camera_are_gone_and_it_stays_upright():
    exif = Image.Exif()
    exif[0x010F] = "PhoneMaker"
    exif[0x0112] = 6  # orientation: rotate 90° to display
    exif[0x8825] = {1: "N", 2: (60.0, 10.0, 1.5), 3: "E", 4: (24.0, 56.0, 2.5)}
    raw = _jpeg(exif=exif.tobytes())
    out = clean_image(raw, "photo")
    assert out.media_type == "image/jpeg" and (out.width, out.height) == (400, 800)
    back = Image.open(io.BytesIO(out.data))
    assert not back.getexif() and b"PhoneMaker" not in out.data
    assert not any(k in back.info for k in ("exif", "icc_profile", "xmp", "comment"))


def test_a_signature_is_greyscale_png_on_white_without_text_chunks():
    im = Image.new("RGBA", (3000, 1000), (0, 0, 0, 0))
    im.putpixel((10, 10), (0, 0, 0, 255))
    raw = io.BytesIO()
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("Author", "someone@example.org")
    im.save(raw, "PNG", pnginfo=info)
    out = clean_image(raw.getvalue(), "signature")
    back = Image.open(io.BytesIO(out.data))
    assert back.mode == "L" and back.size == (1200, 400) and back.getpixel((600, 200)) == 255
    assert b"someone@example.org" not in out.data


def _png_header_claiming(w: int, h: int) -> bytes:
    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


@pytest.mark.parametrize("raw,kind,why", [
    (b"", "photo", "empty"),
    (b"GIF89a" + b"\0" * 64, "photo", "not a JPEG"),
    (_jpeg(), "selfie", "kind"),
    (_png_header_claiming(20_000, 20_000), "photo", "pixels"),
    (b"\xff\xd8" + b"\0" * (MAX_UPLOAD_BYTES + 1), "photo", "larger"),
])
def test_what_is_not_a_phone_image_is_refused_before_decoding(raw, kind, why):
    assert 20_000 * 20_000 > MAX_PIXELS
    with pytest.raises(ImageRefused, match=why):
        clean_image(raw, kind)


def test_the_id_is_stable_for_a_resend_and_differs_per_stop():
    data = clean_image(_jpeg(), "photo").data
    assert data == clean_image(_jpeg(), "photo").data  # re-encoding is deterministic
    assert file_id("d1", "a", "photo", data) == file_id("d1", "a", "photo", data)
    assert file_id("d1", "a", "photo", data) != file_id("d1", "b", "photo", data)
    assert file_id("d1", "a", "photo", data) != file_id("d2", "a", "photo", data)
