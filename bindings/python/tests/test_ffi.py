"""The bindings' copies of the C header's constants."""

from __future__ import annotations

import re

from conftest import REPO

from rawstor import _ffi

HEADER = REPO / "include" / "rawstor.h"

# Every constant _ffi.py repeats from the header, by its Python name.
REPEATED = [
    "TARGET_MAX",
    "UUID_BUF",
    "LAYOUT_MAX",
    "RESIZE_SHRINK",
    "BLOCK_SIZE",
    "QUEUE_DEPTH_MAX",
    "OP_READ",
    "OP_WRITE",
    "OP_FLUSH",
    "OP_DISCARD",
    "OP_WRITE_ZEROES",
    "SQE_FUA",
]


def header_constants() -> dict[str, int]:
    defines = re.findall(r"^#define RAWSTOR_(\w+) (\d+)$", HEADER.read_text(), re.M)
    return {name: int(value) for name, value in defines}


def test_constants_match_the_c_header():
    header = header_constants()
    assert len(header) > 20, f"no constants read from {HEADER}"
    for name in REPEATED:
        assert name in header, f"RAWSTOR_{name} is not in {HEADER}"
        ours = getattr(_ffi, name)
        assert ours == header[name], f"{name}: {ours} here, {header[name]} in the header"


def test_every_numeric_constant_of_the_bindings_is_checked():
    own = {
        name
        for name, value in vars(_ffi).items()
        if name.isupper() and isinstance(value, int) and not isinstance(value, bool)
    }
    assert own == set(REPEATED), own ^ set(REPEATED)
