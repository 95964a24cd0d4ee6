"""Bad input and failures: clear exceptions, chosen by errno, and no harm
done to the object or the session."""

import errno
import os
import subprocess
import sys
import time

import pytest

import rawstor
from rawstor._errors import from_errno

MB = 1 << 20
MISSING = "0190a1b2-c3d4-7e5f-8a6b-000000000000"


def test_errno_picks_the_python_exception():
    assert type(from_errno(-errno.ENOENT)) is FileNotFoundError
    assert type(from_errno(errno.EACCES)) is PermissionError
    assert type(from_errno(errno.ETIMEDOUT)) is TimeoutError
    invalid = from_errno(errno.EINVAL, "bad size")
    assert isinstance(invalid, ValueError) and isinstance(invalid, OSError)
    assert (invalid.errno, invalid.strerror) == (errno.EINVAL, "bad size")
    assert from_errno(errno.EIO).errno == errno.EIO


def test_a_missing_object_is_file_not_found(client, location):
    client.remove(client.create(location, 4096))  # the location exists
    with pytest.raises(FileNotFoundError, match=MISSING):
        client.open(rawstor.target_of(location, MISSING))
    with pytest.raises(FileNotFoundError):
        client.remove(rawstor.target_of(location, MISSING))


@pytest.mark.parametrize(
    "target, message",
    [
        ("garbage", "bad target"),
        ("file://relative/dir/" + MISSING, "absolute"),
        ("file:///tmp/x/not-a-uuid", "bad target"),
        ("nfs://host/" + MISSING, "scheme"),
    ],
)
def test_bad_targets_say_what_is_wrong(client, target, message):
    with pytest.raises(rawstor.InvalidArgumentError, match=message) as caught:
        client.open(target)
    assert caught.value.errno == errno.EINVAL


@pytest.mark.parametrize(
    "size, layout",
    [
        (1000, None),
        (0, None),
        ("12X", None),
        (4096, rawstor.Layout(chunk_size=1000)),
    ],
)
def test_bad_sizes_create_nothing(client, location, size, layout):
    kept = client.create(location, 4096)
    with pytest.raises(ValueError):
        client.create(location, size, layout=layout)
    if not location.startswith("mdt://"):  # mdt:// has no listing yet
        assert [entry.target for entry in client.list(location)] == [kept]
    client.remove(kept)


def test_io_past_the_end_fails_and_the_object_does_not_grow(obj):
    size = obj.size
    with pytest.raises(OSError, match="past the end") as caught:
        obj.read(size - 4096, 8192)
    assert caught.value.errno == errno.ENXIO
    # The library's own words (rawstor_queue_error), naming the object.
    uuid = str(obj.target).rsplit("/", 1)[-1]
    assert f"past the end of object {uuid} ({size} bytes)" in str(caught.value)
    with pytest.raises(OSError, match="past the end"):
        obj.write(size, b"x" * 4096)
    with pytest.raises(OSError, match="past the end"):
        obj.discard(size - 4096, 8192)
    assert obj.size == size
    # The session goes on: the next I/O works.
    obj.write(size - 4096, b"y" * 4096)
    assert obj.read(size - 4096, 4096) == b"y" * 4096


@pytest.mark.parametrize(
    "call, exception",
    [
        (lambda o: o.read("0", 10), TypeError),
        (lambda o: o.read(0.5, 10), TypeError),
        (lambda o: o.read(0, None), TypeError),
        (lambda o: o.read(-1, 10), ValueError),
        (lambda o: o.read(0, -10), ValueError),
        (lambda o: o.write(-4096, b"x"), ValueError),
        (lambda o: o.write(0, "text"), TypeError),
        (lambda o: o.write(0, 42), TypeError),
        (lambda o: o.readinto(0, b"read-only"), TypeError),
        (lambda o: o.readinto(0, memoryview(bytearray(8))[::2]), ValueError),
        (lambda o: o.discard(0, -1), ValueError),
        (lambda o: o.resize(-4096), ValueError),
        (lambda o: o.resize(4095), ValueError),
    ],
)
def test_wrong_arguments_raise_before_any_io(obj, call, exception):
    obj.write(0, b"k" * 4096)
    with pytest.raises(exception):
        call(obj)
    assert obj.read(0, 4096) == b"k" * 4096


def test_wrong_types_for_client_calls(client, location):
    with pytest.raises(TypeError):
        client.create(location.encode(), 4096)
    with pytest.raises(TypeError):
        client.create(location, 4096, layout={"chunk_size": 65536})
    with pytest.raises(TypeError):
        client.open(42)
    with pytest.raises(ValueError):
        client.open("file:///tmp/\0/" + MISSING)
    with pytest.raises(ValueError):
        rawstor.Client(queue_depth=-1)
    with pytest.raises(TypeError):
        rawstor.Client(timeout_ms="soon")


def test_a_closed_object_refuses_io(client, location):
    target = client.create(location, 4096)
    obj = client.open(target)
    obj.close()
    obj.close()  # twice is fine
    assert obj.closed
    for call in (
        lambda: obj.read(0, 1),
        lambda: obj.write(0, b"x"),
        obj.flush,
        lambda: obj.size,
        lambda: obj.discard(0, 4096),
        lambda: obj.resize(8192),
    ):
        with pytest.raises(ValueError, match="closed object"):
            call()
    client.remove(target)


def test_a_closed_client_refuses_calls_but_its_objects_work(location):
    client = rawstor.Client()
    target = client.create(location, 8192)
    obj = client.open(target)
    client.close()
    with pytest.raises(ValueError, match="closed rawstor client"):
        client.open(target)
    obj.write(0, b"z" * 4096)
    assert obj.read(0, 1) == b"z"
    obj.write(4096, b"f" * 4096, fua=True)
    obj.discard(0, 4096)
    assert obj.read(0, 8192) == bytes(4096) + b"f" * 4096
    obj.close()


def test_an_open_object_cannot_be_removed(client, obj):
    with pytest.raises(OSError, match="is open") as caught:
        client.remove(obj.target)
    assert caught.value.errno == errno.EBUSY


def test_an_unreachable_server_is_connection_refused(client):
    started = time.monotonic()
    with pytest.raises(ConnectionRefusedError, match="ost://127.0.0.1:1"):
        client.create("ost://127.0.0.1:1", 4096)
    assert time.monotonic() - started < 10


def test_a_server_that_stops_answering_times_out_then_recovers(start_ost):
    server = start_ost()
    with rawstor.Client(timeout_ms=300, retries=2) as client:
        target = client.create(server.location, MB)
        with client.open(target) as obj:
            obj.write(0, b"a" * 4096)
            server.pause()
            try:
                with pytest.raises(TimeoutError, match=server.address):
                    obj.read(0, 4096)
            finally:
                server.resume()
            assert obj.read(0, 4096) == b"a" * 4096


def test_a_mirror_reads_on_when_one_server_is_gone(start_ost):
    first, second = start_ost("a"), start_ost("b")
    with rawstor.Client(timeout_ms=500, retries=1) as client:
        target = client.create(f"{first.location},{second.location}", MB)
        data = os.urandom(MB)
        with client.open(target) as obj:
            obj.write(0, data)
            obj.flush()
            first.stop()
            assert obj.read(0, MB) == data


def test_a_missing_library_is_a_clear_import_error(tmp_path):
    env = {**os.environ, "RAWSTOR_LIBRARY": str(tmp_path / "nowhere.so")}
    out = subprocess.run(
        [sys.executable, "-c", "import rawstor"], env=env, capture_output=True, text=True
    )
    assert out.returncode != 0
    assert "ImportError: rawstor: cannot load librawstor.so" in out.stderr
    assert "nowhere.so" in out.stderr


def test_a_library_that_is_not_rawstor_is_refused():
    env = {**os.environ, "RAWSTOR_LIBRARY": "libc.so.6"}
    out = subprocess.run(
        [sys.executable, "-c", "import rawstor"], env=env, capture_output=True, text=True
    )
    assert out.returncode != 0
    assert "has no rawstor_" in out.stderr


def test_a_corrupted_block_is_an_io_error_not_bad_data(client, tmp_path):
    location = f"file://{tmp_path / 'store'}"
    target = client.create(location, MB, layout=rawstor.Layout(chunk_size="64K"))
    with client.open(target) as obj:
        obj.write(0, b"g" * 65536)
        obj.flush()
    chunks = sorted(
        path
        for path in (tmp_path / "store").rglob("*")
        if path.is_file() and "%ob" in path.parts and path.suffix != ".crc"
    )
    with open(chunks[0], "r+b") as chunk:
        chunk.seek(5000)
        chunk.write(b"\xff")
    with client.open(target) as obj:
        with pytest.raises(OSError) as caught:
            obj.read(4096, 4096)
        assert caught.value.errno == errno.EIO
        assert obj.read(8192, 4096) == b"g" * 4096  # the other blocks are fine
