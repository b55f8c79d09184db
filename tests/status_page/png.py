"""Just enough of a PNG reader (RFC 2083) to tell a rendered page from a blank one: the pixels of an 8-bit
RGB or RGBA, non-interlaced image, as a screenshot from Chromium is."""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_CHANNELS = {2: 3, 6: 4}  # colour type -> samples per pixel: truecolour, truecolour with alpha


@dataclass(frozen=True)
class Image:
    """A decoded image: its size and its pixels, row by row, as RGB tuples."""

    width: int
    height: int
    rows: list[list[tuple[int, int, int]]]

    def colours(self) -> set[tuple[int, int, int]]:
        """Every distinct colour in the image."""
        return {pixel for row in self.rows for pixel in row}

    def share_of(self, colour: tuple[int, int, int]) -> float:
        """The fraction of pixels that are exactly ``colour``."""
        count = sum(1 for row in self.rows for pixel in row if pixel == colour)
        return count / (self.width * self.height)


def read_png(data: bytes) -> Image:
    """Decode ``data``; raises ``ValueError`` for anything but an 8-bit RGB(A) non-interlaced PNG."""
    if not data.startswith(_SIGNATURE):
        raise ValueError("not a PNG")
    position, idat, header = len(_SIGNATURE), bytearray(), None
    while position < len(data):
        (length,) = struct.unpack(">I", data[position : position + 4])
        kind = data[position + 4 : position + 8]
        body = data[position + 8 : position + 8 + length]
        position += 12 + length
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        elif kind == b"IEND":
            break
    if header is None:
        raise ValueError("no IHDR chunk")
    width, height, depth, colour_type, _, _, interlace = header
    if depth != 8 or colour_type not in _CHANNELS or interlace:
        raise ValueError(f"unsupported PNG: depth {depth}, colour type {colour_type}, interlace {interlace}")
    channels = _CHANNELS[colour_type]
    stride = width * channels
    raw = zlib.decompress(bytes(idat))
    previous = bytearray(stride)
    rows = []
    for y in range(height):
        start = y * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        _unfilter(kind, line, previous, channels)
        rows.append([tuple(line[x : x + 3]) for x in range(0, stride, channels)])
        previous = line
    return Image(width, height, rows)  # type: ignore[arg-type]


def _unfilter(kind: int, line: bytearray, previous: bytearray, bpp: int) -> None:
    """Undo one scanline's filter in place (RFC 2083 §6)."""
    for i in range(len(line)):
        left = line[i - bpp] if i >= bpp else 0
        up = previous[i]
        if kind == 1:
            line[i] = (line[i] + left) & 0xFF
        elif kind == 2:
            line[i] = (line[i] + up) & 0xFF
        elif kind == 3:
            line[i] = (line[i] + (left + up) // 2) & 0xFF
        elif kind == 4:
            corner = previous[i - bpp] if i >= bpp else 0
            estimate = left + up - corner
            pa, pb, pc = abs(estimate - left), abs(estimate - up), abs(estimate - corner)
            predictor = left if pa <= pb and pa <= pc else up if pb <= pc else corner
            line[i] = (line[i] + predictor) & 0xFF
        elif kind != 0:
            raise ValueError(f"unknown PNG filter {kind}")
