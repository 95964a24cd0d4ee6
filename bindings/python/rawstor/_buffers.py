"""Addresses of Python buffers for the C calls, without copying.

Writable buffers (``bytearray``, ``memoryview``, numpy arrays, ``mmap``)
are passed in place and stay exported (cannot be resized) while the I/O
is in flight. ``bytes`` are passed in place too. Other read-only buffers
(a read-only ``memoryview`` or numpy array) are copied once: ctypes has no
way to take their address.
"""

from __future__ import annotations

import ctypes
import operator
import re
from typing import Any

_anchor = ctypes.c_char.from_buffer
_addressof = ctypes.addressof

#: A buffer's address, its length in bytes, and what keeps the address
#: valid (an export of the buffer, or the bytes object) while it is held.
Pinned = tuple[int, int, Any]


def _view(data: Any, what: str) -> memoryview:
    try:
        view = memoryview(data)
    except TypeError:
        raise TypeError(
            f"{what} must be a bytes-like object (bytes, bytearray, memoryview, numpy "
            f"array), not {type(data).__name__}"
        ) from None
    if not view.c_contiguous:
        raise ValueError(f"{what} must be a contiguous buffer")
    return view


def _pin(view: memoryview) -> Pinned:
    length = view.nbytes
    if length == 0:
        return 0, 0, None
    anchor = _anchor(view)  # exports the buffer: it cannot move or shrink
    return _addressof(anchor), length, anchor


def writable(buffer: Any) -> Pinned:
    """A buffer to read into; it must be writable."""
    view = _view(buffer, "buffer")
    if view.readonly:
        raise TypeError(f"buffer must be writable ({type(buffer).__name__} is read-only)")
    return _pin(view)


def readable(data: Any) -> Pinned:
    """A buffer to write from."""
    if type(data) is bytes:
        return ctypes.cast(data, ctypes.c_void_p).value or 0, len(data), data
    view = _view(data, "data")
    if view.readonly:
        return readable(view.tobytes())
    return _pin(view)


def index(value: Any, what: str) -> int:
    """An integer argument (an offset, a length, a size) that is not negative."""
    try:
        number = operator.index(value)
    except TypeError:
        raise TypeError(f"{what} must be an integer, not {type(value).__name__}") from None
    if number < 0:
        raise ValueError(f"{what} must not be negative: {number}")
    return number


_SIZE = re.compile(r"\s*(\d+)\s*(|B|K|KB|KIB|M|MB|MIB|G|GB|GIB|T|TB|TIB)\s*", re.IGNORECASE)
_SHIFT = {"": 0, "K": 10, "M": 20, "G": 30, "T": 40}


def size(value: Any, what: str = "size") -> int:
    """A size in bytes: an integer, or text such as ``"4K"``, ``"64M"``, ``"1GiB"``
    (binary multiples, as the CLI takes them)."""
    if isinstance(value, str):
        match = _SIZE.fullmatch(value)
        if not match:
            raise ValueError(f"bad {what} {value!r}: expected a number such as 4096, 4K, 1G")
        return int(match.group(1)) << _SHIFT.get(match.group(2)[:1].upper(), 0)
    return index(value, what)
