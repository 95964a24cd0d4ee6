"""Zero-copy I/O with buffers: bytearray, memoryview, numpy arrays, mmap."""

import mmap

import numpy as np
import pytest

MB = 1 << 20


def test_numpy_arrays_are_written_and_read_in_place(obj):
    source = np.arange(MB // 4, dtype=np.uint32)
    assert obj.write(0, source) == MB
    target = np.zeros(MB // 4, dtype=np.uint32)
    assert obj.readinto(0, target) == MB
    assert np.array_equal(source, target)


def test_a_2d_numpy_array_and_a_slice_of_one(obj):
    matrix = np.random.default_rng(7).integers(0, 255, size=(64, 1024), dtype=np.uint8)
    obj.write(4096, matrix)
    rows = np.zeros((64, 1024), dtype=np.uint8)
    obj.readinto(4096, rows[16:32])  # a contiguous slice: rows 16..31 get bytes 0..16K
    assert np.array_equal(rows[16:32], matrix[:16])
    assert not rows[:16].any() and not rows[32:].any()


def test_strided_numpy_views_are_refused(obj):
    array = np.zeros((64, 64), dtype=np.uint8)
    with pytest.raises(ValueError, match="contiguous"):
        obj.readinto(0, array[:, ::2])
    with pytest.raises(ValueError, match="contiguous"):
        obj.write(0, array.T)


def test_read_only_buffers_are_written_from(obj):
    frozen = np.full(4096, 9, dtype=np.uint8)
    frozen.flags.writeable = False
    obj.write(0, frozen)
    obj.write(4096, memoryview(b"m" * 4096))
    assert obj.read(0, 8192) == b"\x09" * 4096 + b"m" * 4096
    with pytest.raises(TypeError, match="writable"):
        obj.readinto(0, frozen)


def test_an_mmap_is_read_into_in_place(obj):
    obj.write(0, b"p" * 8192)
    with mmap.mmap(-1, 8192) as region:
        assert obj.readinto(0, region) == 8192
        assert region[:] == b"p" * 8192


def test_a_buffer_being_read_into_cannot_be_resized(obj):
    import asyncio

    buffer = bytearray(4096)

    async def main():
        read = asyncio.ensure_future(obj.readinto_async(0, buffer))
        await asyncio.sleep(0)
        with pytest.raises(BufferError):
            buffer.extend(b"more")
        await read
        buffer.extend(b"more")  # free again once the read is done

    asyncio.run(main())
    assert len(buffer) == 4100
