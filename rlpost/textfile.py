"""Reading a user's text file: one line naming the file (and the line of a bad byte) when it cannot be read."""
from __future__ import annotations

from pathlib import Path


def read_utf8(path: Path, what: str, error: type[Exception]) -> str:
    """``path`` as UTF-8 text (a leading byte-order mark dropped), or ``error`` naming ``what`` it is,
    the file, and the line of the first byte that is not UTF-8."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise error(f"{path}: cannot read the {what} ({e.strerror})") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise error(f"{path}: not UTF-8 text (byte 0x{raw[e.start]:02x} on line {line}): re-save the {what} as UTF-8") from None
