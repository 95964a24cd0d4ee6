"""The blocking API against each kind of location: create, open, read,
write, flush, discard, resize, list, remove."""

import os
import subprocess

import pytest
from conftest import OST_BINARY

import rawstor

CLI = str(OST_BINARY.parent / "rawstor")

MB = 1 << 20


def test_create_returns_a_target_that_opens_with_the_asked_layout(client, location):
    target = client.create(location, "8M", layout=rawstor.Layout(chunk_size=1 << 20))
    uuid = target.rsplit("/", 1)[1]
    assert target == rawstor.target_of(location, uuid)
    with client.open(target) as obj:
        info = obj.info
        assert (info.uuid, info.size, info.chunk_size, info.block_size) == (uuid, 8 * MB, MB, 4096)
        assert obj.size == 8 * MB
        assert obj.target == target
    assert client.info(target) == info
    client.remove(target)
    with pytest.raises(FileNotFoundError):
        client.open(target)


@pytest.mark.parametrize("redundancy", ["replicas:2", "ec:2+1"])
def test_create_on_mdt_with_the_asked_redundancy(client, module_cluster, redundancy):
    layout = rawstor.Layout(chunk_size="1M", redundancy=redundancy)
    target = client.create(module_cluster.location, "8M", layout=layout)
    assert client.layout(target) == redundancy
    shown = subprocess.run([CLI, "info", target], capture_output=True, text=True, check=True).stdout
    assert f"layout: {redundancy}\n" in shown
    data = os.urandom(3 * MB)
    with client.open(target) as obj:
        obj.write(MB // 2, data)
        assert obj.read(MB // 2, len(data)) == data
    client.remove(target)


@pytest.mark.parametrize(
    "redundancy, error, message",
    [
        ("raid5", ValueError, "raid5"),
        ("ec:4+2", OSError, "needs 6 OSTs"),
    ],
)
def test_a_redundancy_the_cluster_cannot_give_is_refused(
    client, module_cluster, redundancy, error, message
):
    layout = rawstor.Layout(redundancy=redundancy)
    with pytest.raises(error, match=message):
        client.create(module_cluster.location, "8M", layout=layout)


def test_layout_says_how_each_kind_of_object_is_kept(request, client, obj):
    kind = request.node.callspec.params["obj"]
    expected = {
        "file": "replicas:1",
        "ost": "replicas:1",
        "mirror": "replicas:2",
        "mdt": "replicas:3",
        "ec": "ec:2+1",
    }[kind]
    assert client.layout(obj.target) == expected


def test_layout_of_a_missing_object_is_file_not_found(client, module_osts):
    missing = rawstor.target_of(module_osts[0].location, "0190a1b2-c3d4-7e5f-8a6b-7c8d9e0f1a2b")
    with pytest.raises(FileNotFoundError):
        client.layout(missing)


def test_a_redundancy_needs_an_mdt_location(client, module_osts):
    location = module_osts[0].location
    before = [entry.target for entry in client.list(location)]
    with pytest.raises(ValueError, match="needs an mdt:// location"):
        client.create(location, "8M", layout=rawstor.Layout(redundancy="replicas:2"))
    assert [entry.target for entry in client.list(location)] == before


def test_create_with_a_chosen_uuid(client, location):
    uuid = "0190a1b2-c3d4-7e5f-8a6b-7c8d9e0f1a2b"
    target = client.create(location, 4096, uuid=uuid)
    assert client.info(target).uuid == uuid
    with pytest.raises(FileExistsError):
        client.create(location, 4096, uuid=uuid)
    client.remove(target)


def test_data_round_trips_across_chunks_and_survives_reopening(client, obj):
    data = os.urandom(3 * MB)
    # Unaligned, and crossing chunk boundaries (1 MiB chunks).
    assert obj.write(MB // 2 + 3, data) == len(data)
    obj.flush()
    assert obj.read(MB // 2 + 3, len(data)) == data
    assert obj.read(0, 16) == bytes(16)
    with client.open(obj.target) as again:
        assert again.read(MB // 2 + 3, len(data)) == data


def test_a_durable_write_reads_back(obj):
    obj.write(8192, b"fua".ljust(4096, b"."), fua=True)
    assert obj.read(8192, 3) == b"fua"


def test_discard_and_write_zeroes_read_as_zeros_and_leave_the_rest(obj):
    pattern = os.urandom(4 * MB)
    obj.write(0, pattern)
    obj.discard(MB, MB)
    obj.write_zeroes(3 * MB, 4096)
    after = obj.read(0, 4 * MB)
    assert after[MB : 2 * MB] == bytes(MB)
    assert after[3 * MB : 3 * MB + 4096] == bytes(4096)
    assert after[:MB] == pattern[:MB]
    assert after[2 * MB : 3 * MB] == pattern[2 * MB : 3 * MB]
    assert after[3 * MB + 4096 :] == pattern[3 * MB + 4096 :]


def test_resize_grows_with_zeros_and_shrinks_only_when_asked(obj):
    obj.write(0, b"\xab" * 4096)
    obj.resize(6 * MB)
    assert obj.size == 6 * MB
    assert obj.read(5 * MB, 4096) == bytes(4096)
    with pytest.raises(rawstor.InvalidArgumentError, match="shrinking"):
        obj.resize(4096)
    assert obj.size == 6 * MB
    obj.resize("4K", shrink=True)
    assert obj.size == 4096
    assert obj.read(0, 4096) == b"\xab" * 4096


def test_list_pages_through_every_object_in_uuid_order(client, location):
    targets = sorted(client.create(location, 4096) for _ in range(5))
    pages = list(client.list_pages(location, page_size=2))
    assert [len(page) for page in pages] == [2, 2, 1]
    entries = [entry for page in pages for entry in page]
    assert [entry.target for entry in entries] == targets
    assert [entry.uuid for entry in entries] == sorted(entry.uuid for entry in entries)
    assert all(entry.size == 4096 for entry in entries)
    assert list(client.list(location)) == entries
    # Every listed target opens.
    for entry in entries:
        assert client.info(entry.target).uuid == entry.uuid
        client.remove(entry.target)
    assert list(client.list(location)) == []


def test_list_is_lazy(client, location):
    for _ in range(3):
        client.create(location, 4096)
    listing = client.list(location, page_size=1)
    first = next(listing)
    client.remove(first.target)
    rest = list(listing)
    assert len(rest) == 2 and first not in rest
    for entry in rest:
        client.remove(entry.target)


def test_threads_share_an_object(obj):
    from concurrent.futures import ThreadPoolExecutor

    def worker(n):
        block = bytes([n]) * 65536
        for i in range(16):
            obj.write((n * 16 + i) * 65536 % (4 * MB), block)
        return n

    with ThreadPoolExecutor(4) as pool:
        assert sorted(pool.map(worker, range(4))) == [0, 1, 2, 3]
    for n in range(4):
        assert obj.read(n * 16 * 65536, 65536) == bytes([n]) * 65536
