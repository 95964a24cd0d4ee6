"""The C ABI of librawstor (include/rawstor.h), declared with ctypes.

ctypes rather than cffi: it ships with Python, so the package installs
anywhere without a compiler or a dependency; it drops the GIL around every
foreign call, so blocking I/O in one thread does not stall the others; and
the ABI is small (a dozen functions, five fixed-layout structs whose sizes
are checked against the library at import).

Where the library comes from, first match wins:

1. ``RAWSTOR_LIBRARY``: a path to ``librawstor.so`` (nothing else is tried);
2. a copy bundled in the wheel (``rawstor/_lib/librawstor.so``);
3. ``pkg-config --variable=libdir rawstor`` (after ``make install``);
4. the dynamic linker's search path (``ldconfig``, ``LD_LIBRARY_PATH``).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import subprocess
from pathlib import Path

LIBRARY_ENV = "RAWSTOR_LIBRARY"

TARGET_MAX = 4096
UUID_BUF = 40
LAYOUT_MAX = 32
RESIZE_SHRINK = 1
BLOCK_SIZE = 4096
QUEUE_DEPTH_MAX = 65536

OP_READ = 1
OP_WRITE = 2
OP_FLUSH = 5
OP_DISCARD = 6
OP_WRITE_ZEROES = 7
SQE_FUA = 1


class Options(ctypes.Structure):
    _fields_ = [
        ("queue_depth", ctypes.c_uint32),
        ("timeout_ms", ctypes.c_uint32),
        ("retries", ctypes.c_uint32),
        ("list_limit", ctypes.c_uint32),
        ("straggler_ms", ctypes.c_uint32),
    ]


class CreateSpec(ctypes.Structure):
    _fields_ = [
        ("size", ctypes.c_uint64),
        ("chunk_size", ctypes.c_uint64),
        ("uuid", ctypes.c_char_p),
    ]


class ObjectInfo(ctypes.Structure):
    _fields_ = [
        ("uuid", ctypes.c_char * UUID_BUF),
        ("size", ctypes.c_uint64),
        ("chunk_size", ctypes.c_uint64),
        ("block_size", ctypes.c_uint64),
    ]


class Sqe(ctypes.Structure):
    _fields_ = [
        ("opcode", ctypes.c_uint8),
        ("flags", ctypes.c_uint8),
        ("reserved", ctypes.c_uint16),
        ("iovcnt", ctypes.c_uint32),
        ("object", ctypes.c_void_p),
        ("offset", ctypes.c_uint64),
        ("length", ctypes.c_uint64),
        ("addr", ctypes.c_void_p),
        ("user_data", ctypes.c_uint64),
    ]


class Cqe(ctypes.Structure):
    _fields_ = [("user_data", ctypes.c_uint64), ("result", ctypes.c_int64)]


# The library's own size for each struct, by rawstor_struct_size's index.
_LAYOUTS = [(0, Sqe), (1, Cqe), (2, Options), (3, ObjectInfo), (4, CreateSpec)]

_P = ctypes.POINTER
_vp = ctypes.c_void_p
_SIGNATURES = {
    "rawstor_strerror": (ctypes.c_char_p, [ctypes.c_int]),
    "rawstor_last_error": (ctypes.c_char_p, []),
    "rawstor_queue_error": (ctypes.c_char_p, [ctypes.c_void_p, ctypes.c_uint64]),
    "rawstor_version": (ctypes.c_char_p, []),
    "rawstor_struct_size": (ctypes.c_size_t, [ctypes.c_int]),
    "rawstor_options_init": (ctypes.c_int, [_P(Options)]),
    "rawstor_new": (ctypes.c_int, [_P(Options), _P(_vp)]),
    "rawstor_free": (None, [_vp]),
    "rawstor_object_create": (
        ctypes.c_int,
        [_vp, ctypes.c_char_p, _P(CreateSpec), ctypes.c_char_p, ctypes.c_size_t],
    ),
    "rawstor_object_create_layout": (
        ctypes.c_int,
        [_vp, ctypes.c_char_p, _P(CreateSpec), ctypes.c_char_p, ctypes.c_char_p, ctypes.c_size_t],
    ),
    "rawstor_target_layout": (
        ctypes.c_int,
        [_vp, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_size_t],
    ),
    "rawstor_object_open": (ctypes.c_int, [_vp, ctypes.c_char_p, _P(_vp)]),
    "rawstor_object_close": (ctypes.c_int, [_vp]),
    "rawstor_object_remove": (ctypes.c_int, [_vp, ctypes.c_char_p]),
    "rawstor_object_stat": (ctypes.c_int, [_vp, _P(ObjectInfo)]),
    "rawstor_object_resize": (ctypes.c_int, [_vp, ctypes.c_uint64, ctypes.c_uint32]),
    "rawstor_object_list": (
        ctypes.c_int,
        [
            _vp,
            ctypes.c_char_p,
            ctypes.c_char_p,
            _P(ObjectInfo),
            ctypes.c_size_t,
            _P(ctypes.c_size_t),
        ],
    ),
    "rawstor_queue_new": (ctypes.c_int, [_vp, ctypes.c_uint32, _P(_vp)]),
    "rawstor_queue_free": (None, [_vp]),
    "rawstor_queue_eventfd": (ctypes.c_int, [_vp]),
    "rawstor_queue_submit": (ctypes.c_int, [_vp, _P(Sqe), ctypes.c_uint32]),
    "rawstor_queue_reap": (
        ctypes.c_int,
        [_vp, _P(Cqe), ctypes.c_uint32, ctypes.c_uint32, ctypes.c_int],
    ),
    "rawstor_object_pread": (ctypes.c_int64, [_vp, _vp, ctypes.c_size_t, ctypes.c_uint64]),
    "rawstor_object_pwrite": (ctypes.c_int64, [_vp, _vp, ctypes.c_size_t, ctypes.c_uint64]),
    "rawstor_object_flush": (ctypes.c_int, [_vp]),
}


def _pkg_config_libdir() -> str | None:
    try:
        out = subprocess.run(
            ["pkg-config", "--variable=libdir", "rawstor"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else None


def _candidates() -> list[str]:
    explicit = os.environ.get(LIBRARY_ENV)
    if explicit:
        return [explicit]
    found = []
    bundled = Path(__file__).parent / "_lib" / "librawstor.so"
    if bundled.exists():
        found.append(str(bundled))
    libdir = _pkg_config_libdir()
    if libdir:
        found.append(os.path.join(libdir, "librawstor.so"))
    found.append(ctypes.util.find_library("rawstor") or "librawstor.so")
    return found


def _load() -> tuple[ctypes.CDLL, str]:
    tried = []
    for candidate in _candidates():
        try:
            return ctypes.CDLL(candidate), candidate
        except OSError as e:
            tried.append(f"{candidate}: {e}")
    raise ImportError(
        "rawstor: cannot load librawstor.so; build it (make build) and set "
        f"{LIBRARY_ENV}=/path/to/librawstor.so, or install it (make install). Tried: "
        + "; ".join(tried)
    )


def _declare(lib: ctypes.CDLL) -> None:
    for name, (restype, argtypes) in _SIGNATURES.items():
        try:
            function = getattr(lib, name)
        except AttributeError:
            raise ImportError(
                f"rawstor: {LIBRARY_PATH} has no {name}: not librawstor, or too old"
            ) from None
        function.restype = restype
        function.argtypes = argtypes
    for which, struct in _LAYOUTS:
        theirs = lib.rawstor_struct_size(which)
        if theirs != ctypes.sizeof(struct):
            raise ImportError(
                f"rawstor: {LIBRARY_PATH} has a {theirs}-byte {struct.__name__}, these "
                f"bindings expect {ctypes.sizeof(struct)}: library and bindings differ in version"
            )


lib, LIBRARY_PATH = _load()
_declare(lib)
VERSION = lib.rawstor_version().decode()
