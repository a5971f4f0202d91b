"""Proof-of-delivery images through the journal (docs/protocol.md §4 "Images", revision 4),
pure: splitting an image into `act` readings of kind `image.part` on the vehicle, checking one
part at the gateway's edge (hostile until here), and the assembly of one image's parts, which
takes `now` and the parts already held, and says what to do with the next one.

A part travels as text: the `act` envelope admits plain values only (no CBOR bytes), and text
within MAX_ACTION_TEXT, so a part's bytes are base64 in lines of CHUNK_CHARS. An older gateway
keeps such a reading harmlessly (its applier refuses the unknown field `image`, logged; the
batch is acknowledged).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import math
import re
from dataclasses import dataclass

from .schema import MAX_ACTION_TEXT

PART_KIND = "image.part"
IMAGE_KINDS = ("photo", "signature")
# An image as the tablet uploads it: the cab's and the backend's bound (12 MiB).
MAX_IMAGE_BYTES = 12 * 1024 * 1024
# The raw bytes of one part: 24 KiB is 32 KiB of base64, so a part fits a default 64 KiB
# batch (DEFAULT_MAX_BATCH_BYTES) with room for its envelope and a few positions beside it.
PART_BYTES = 24 * 1024
# One base64 line: the act envelope's longest text (a driver's message, 2000 characters),
# rounded down to a multiple of 4 so each line decodes on its own.
CHUNK_CHARS = MAX_ACTION_TEXT // 4 * 4
# The most parts an image may claim: MAX_IMAGE_BYTES in PART_BYTES parts (512).
MAX_PARTS = math.ceil(MAX_IMAGE_BYTES / PART_BYTES)
# An image's id as the cab makes it ("f" + 40 hex digits of SHA-256, agent/cab/server.py).
IMAGE_ID_RE = re.compile(r"f[0-9a-f]{40}")
SHA256_RE = re.compile(r"[0-9a-f]{64}")
# A job id on the part (the applier's own bound on ids).
MAX_JOB_CHARS = 64
# Images being assembled on the gateway whose last part came longer ago than this are given
# up (a dead letter): the journal drains in order and never drops `act` readings, so a gap
# that lasts a week is a broken or hostile sender, not a slow link.
STALE_MS = 7 * 24 * 3600 * 1000
# Images one vehicle may have half-assembled at the gateway at once: the journal delivers
# parts in order, so an honest vehicle has one (a few after a reconnect); the cab keeps at
# most 64 (agent/cab/records.py MAX_FILES). Bounds what a hostile vehicle can make us hold
# to 64 × 12 MiB.
MAX_OPEN_IMAGES = 64


class PartRefused(ValueError):
    """This part cannot be taken (the message says why): a dead letter, never a crash."""


@dataclass(frozen=True)
class Part:
    image_id: str
    kind: str  # photo or signature
    job_id: str | None
    index: int  # 0-based
    count: int
    size: int  # the whole image's bytes
    sha256: str  # of the whole image, hex
    data: bytes

    def header(self) -> tuple:
        """What every part of one image must agree on."""
        return (self.image_id, self.kind, self.job_id, self.count, self.size, self.sha256)


def part_count(size: int) -> int:
    return max(1, math.ceil(size / PART_BYTES))


def part_key(image_id: str, index: int) -> str:
    """A part's action key: stable, so a re-sent part is the same reading's content."""
    return f"{image_id}:{index}"


def split(image_id: str, kind: str, job_id: str | None, data: bytes,
          device_id: str) -> list[dict]:
    """The `act` action bodies carrying `data` in order (index 0 first)."""
    if kind not in IMAGE_KINDS or not IMAGE_ID_RE.fullmatch(image_id):
        raise ValueError("an image id and a kind of photo or signature")
    if not 0 < len(data) <= MAX_IMAGE_BYTES:
        raise ValueError(f"an image of 1..{MAX_IMAGE_BYTES} bytes")
    count = part_count(len(data))
    digest = hashlib.sha256(data).hexdigest()
    out = []
    for index in range(count):
        text = base64.b64encode(data[index * PART_BYTES:(index + 1) * PART_BYTES]).decode()
        out.append({"key": part_key(image_id, index), "device_id": device_id,
                    "device_seq": 0, "kind": PART_KIND, "image": {
                        "id": image_id, "kind": kind, "job_id": job_id, "index": index,
                        "count": count, "size": len(data), "sha256": digest,
                        "data": [text[i:i + CHUNK_CHARS]
                                 for i in range(0, len(text), CHUNK_CHARS)]}})
    return out


def is_part(action: object) -> bool:
    return isinstance(action, dict) and action.get("kind") == PART_KIND


def _int(v: object, low: int, high: int, name: str) -> int:
    if type(v) is not int or not low <= v <= high:
        raise PartRefused(f"{name}: an integer in [{low}, {high}]")
    return v


def parse_part(action: object) -> Part:
    """One part's action body checked to the byte: PartRefused saying what is wrong."""
    if not is_part(action):
        raise PartRefused(f"not an {PART_KIND} action")
    img = action.get("image")
    if not isinstance(img, dict):
        raise PartRefused("image: a map")
    image_id, kind, job = img.get("id"), img.get("kind"), img.get("job_id")
    if not isinstance(image_id, str) or not IMAGE_ID_RE.fullmatch(image_id):
        raise PartRefused("image.id: f + 40 hex digits")
    if kind not in IMAGE_KINDS:
        raise PartRefused("image.kind: photo or signature")
    if job is not None and not (isinstance(job, str) and 0 < len(job) <= MAX_JOB_CHARS):
        raise PartRefused(f"image.job_id: text of at most {MAX_JOB_CHARS}")
    size = _int(img.get("size"), 1, MAX_IMAGE_BYTES, "image.size")
    count = _int(img.get("count"), 1, MAX_PARTS, "image.count")
    if count != part_count(size):
        raise PartRefused(f"image.count: {part_count(size)} parts of {PART_BYTES} bytes "
                          f"for {size} bytes")
    index = _int(img.get("index"), 0, count - 1, "image.index")
    digest = img.get("sha256")
    if not isinstance(digest, str) or not SHA256_RE.fullmatch(digest):
        raise PartRefused("image.sha256: 64 lowercase hex digits")
    chunks = img.get("data")
    if not isinstance(chunks, list) or not all(isinstance(c, str) for c in chunks):
        raise PartRefused("image.data: a list of base64 text")
    try:
        data = base64.b64decode("".join(chunks), validate=True)
    except (binascii.Error, ValueError):
        raise PartRefused("image.data: not base64") from None
    want = PART_BYTES if index < count - 1 else size - (count - 1) * PART_BYTES
    if len(data) != want:
        raise PartRefused(f"image.data: part {index} of {count} holds {want} bytes, "
                          f"not {len(data)}")
    if action.get("key") != part_key(image_id, index):
        raise PartRefused("key: the image id and the part's index")
    return Part(image_id, kind, job, index, count, size, digest, data)


@dataclass(frozen=True)
class Held:
    """What the gateway holds of one image being assembled (from its store)."""

    header: tuple  # Part.header() of the first part taken
    data: dict[int, bytes]  # index → bytes
    last_ms: int  # when the last part was taken


@dataclass(frozen=True)
class Step:
    """What to do with a part: `action` is "keep" (store this part), "same" (a re-send of a
    held part: nothing to do), "complete" (store it; `image` is the whole, hash checked),
    "refuse" (dead-letter it and drop what is held of the image; `why` says why)."""

    action: str
    why: str = ""
    image: bytes | None = None


def assemble(held: Held | None, part: Part, now_ms: int, stored: bool = False) -> Step:
    """The next step of one image's assembly given what is held (None: nothing yet);
    `stored`: the image is already assembled and stored (a part re-sent after that, e.g. a
    batch sent again after a lost ack, is "same")."""
    if stored:
        return Step("same")
    if held is not None and now_ms - held.last_ms > STALE_MS:
        return Step("refuse", f"image {part.image_id}: no part for {STALE_MS // 86_400_000} "
                    "days; given up")
    if held is not None and held.header != part.header():
        return Step("refuse", f"image {part.image_id}: part {part.index} disagrees with the "
                    "parts held (kind, job, size, count or sha256)")
    data = dict(held.data) if held is not None else {}
    if part.index in data:
        if data[part.index] == part.data:
            return Step("same")
        return Step("refuse", f"image {part.image_id}: part {part.index} sent twice with "
                    "different bytes")
    data[part.index] = part.data
    if len(data) < part.count:
        return Step("keep")
    whole = b"".join(data[i] for i in range(part.count))
    if hashlib.sha256(whole).hexdigest() != part.sha256:
        return Step("refuse", f"image {part.image_id}: the parts do not match its sha256")
    return Step("complete", image=whole)


def admit(open_images: dict[str, int], image_id: str, now_ms: int) -> tuple[list[str], str]:
    """Whether a vehicle may start assembling `image_id` given the images it has open
    (id → when their last part came): (the stale ones to give up, why not — "" if it may)."""
    stale = [i for i, last in open_images.items() if now_ms - last > STALE_MS]
    live = len(open_images) - len(stale) - (image_id in open_images)
    if live >= MAX_OPEN_IMAGES:
        return stale, (f"image {image_id}: {MAX_OPEN_IMAGES} images of this vehicle are "
                       "being assembled already")
    return stale, ""
