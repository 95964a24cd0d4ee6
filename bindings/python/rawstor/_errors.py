"""Failures of the library as Python exceptions.

A negative errno becomes ``OSError(errno, message)``, which Python itself
turns into the matching subclass (``FileNotFoundError`` for ENOENT,
``PermissionError`` for EACCES, ``TimeoutError`` for ETIMEDOUT, ...). The
message is the library's own line for the calling thread
(``rawstor_last_error``), which names the target and the cause. EINVAL
raises :class:`InvalidArgumentError`, both an ``OSError`` and a
``ValueError``.
"""

from __future__ import annotations

import errno as _errno

from . import _ffi


class InvalidArgumentError(OSError, ValueError):
    """The library refused an argument (EINVAL): a bad target, size, range."""


def strerror(code: int) -> str:
    return _ffi.lib.rawstor_strerror(code).decode(errors="replace")


def from_errno(code: int, message: str | None = None) -> OSError:
    """The exception for ``-code`` or ``code``, with ``message`` or strerror."""
    code = abs(code)
    text = message or strerror(code)
    if code == _errno.EINVAL:
        return InvalidArgumentError(code, text)
    return OSError(code, text)


def last_error(code: int) -> OSError:
    """The exception for a failed call that returned ``code`` on this thread."""
    message = _ffi.lib.rawstor_last_error().decode(errors="replace")
    return from_errno(code, message or None)


def check(code: int) -> int:
    """Returns a non-negative ``code``; raises for a negative one."""
    if code < 0:
        raise last_error(code)
    return code
