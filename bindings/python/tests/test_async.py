"""The asyncio interface: many I/Os in flight through one queue whose
eventfd the loop watches."""

import asyncio
import errno
import os

import pytest

import rawstor

MB = 1 << 20


def run(coroutine):
    return asyncio.run(asyncio.wait_for(coroutine, 60))


def test_many_writes_and_reads_in_flight_round_trip(obj):
    blocks = [os.urandom(4096) for _ in range(1024)]

    async def main():
        written = await asyncio.gather(
            *(obj.write_async(i * 4096, block) for i, block in enumerate(blocks))
        )
        assert written == [4096] * 1024
        await obj.flush_async()
        return await asyncio.gather(*(obj.read_async(i * 4096, 4096) for i in range(1024)))

    assert run(main()) == blocks
    assert obj.read(0, 4 * MB) == b"".join(blocks)


def test_the_queue_fills_to_its_depth_and_the_rest_wait_their_turn(location):
    depth = 8
    with rawstor.Client(queue_depth=depth) as client:
        target = client.create(location, MB)

        async def main():
            async with client.open(target) as obj:
                tasks = [
                    asyncio.ensure_future(obj.write_async(i * 4096, bytes([i]) * 4096))
                    for i in range(200)
                ]
                await asyncio.sleep(0)  # the tasks start: one batch is submitted
                await asyncio.sleep(0)
                queue = client._async_queue()
                in_flight, waiting = queue._submitted, len(queue._waiting)
                assert sum(await asyncio.gather(*tasks)) == 200 * 4096
                return in_flight, waiting, obj.read(0, 200 * 4096)

        in_flight, waiting, data = run(main())
        assert in_flight <= depth and in_flight + waiting >= 200 - depth
        assert data == b"".join(bytes([i]) * 4096 for i in range(200))
        client.remove(target)


def test_other_coroutines_run_while_io_is_in_flight(start_ost):
    server = start_ost()
    with rawstor.Client(timeout_ms=2000) as client:
        target = client.create(server.location, MB)

        async def main():
            async with client.open(target) as obj:
                server.pause()
                read = asyncio.ensure_future(obj.read_async(0, 4096))
                ticks = 0
                for _ in range(20):
                    await asyncio.sleep(0.01)
                    ticks += 1
                assert not read.done()
                server.resume()
                assert await read == bytes(4096)
                return ticks

        assert run(main()) == 20


def test_readinto_async_fills_the_callers_buffer_in_place(obj):
    obj.write(0, bytes(range(256)) * 64)
    buffer = bytearray(16384)
    window = memoryview(buffer)[4096:8192]

    async def main():
        return await obj.readinto_async(256, window)

    assert run(main()) == 4096
    assert buffer[:4096] == bytes(4096) and buffer[8192:] == bytes(8192)
    assert buffer[4096:8192] == (bytes(range(256)) * 64)[256 : 256 + 4096]


def test_discard_and_write_zeroes_async(obj):
    obj.write(0, b"\xff" * (2 * MB))

    async def main():
        await asyncio.gather(obj.discard_async(0, MB), obj.write_zeroes_async(MB, 8192))

    run(main())
    assert obj.read(0, MB + 8192) == bytes(MB + 8192)
    assert obj.read(MB + 8192, 4096) == b"\xff" * 4096


def test_failures_come_back_as_exceptions_naming_the_io(obj):
    async def main():
        results = await asyncio.gather(
            obj.read_async(obj.size, 4096),
            obj.write_async(0, b"ok" * 2048),
            return_exceptions=True,
        )
        return results

    failure, written = run(main())
    assert isinstance(failure, OSError) and failure.errno == errno.ENXIO
    assert f"read of 4096 bytes at offset {obj.size}" in str(failure)
    assert obj.target in str(failure)
    assert written == 4096


def test_bad_arguments_raise_at_the_call(obj):
    async def main():
        with pytest.raises(ValueError):
            await obj.read_async(-1, 4096)
        with pytest.raises(TypeError):
            await obj.write_async(0, "text")
        with pytest.raises(TypeError):
            await obj.readinto_async(0, b"read-only")

    run(main())


def test_close_waits_for_in_flight_io_only_when_asked(client, location):
    target = client.create(location, MB)

    async def main():
        obj = client.open(target)
        pending = [asyncio.ensure_future(obj.write_async(i * 4096, b"w" * 4096)) for i in range(64)]
        await asyncio.sleep(0)
        with pytest.raises(OSError) as caught:
            obj.close()
        assert caught.value.errno == errno.EBUSY
        assert not obj.closed
        await obj.aclose()
        assert obj.closed
        assert await asyncio.gather(*pending) == [4096] * 64
        with pytest.raises(ValueError, match="closed object"):
            await obj.read_async(0, 4096)

    run(main())
    with client.open(target) as obj:
        assert obj.read(63 * 4096, 4096) == b"w" * 4096
    client.remove(target)


def test_a_cancelled_read_does_not_disturb_the_rest(start_ost):
    server = start_ost()
    with rawstor.Client(timeout_ms=2000) as client:
        target = client.create(server.location, MB)

        async def main():
            async with client.open(target) as obj:
                await obj.write_async(0, b"c" * 8192)
                server.pause()
                doomed = asyncio.ensure_future(obj.read_async(0, 4096))
                kept = asyncio.ensure_future(obj.read_async(4096, 4096))
                await asyncio.sleep(0.05)
                doomed.cancel()
                server.resume()
                assert await kept == b"c" * 4096
                with pytest.raises(asyncio.CancelledError):
                    await doomed

        run(main())


def test_one_client_serves_loop_after_loop(obj):
    for round_ in range(3):
        run(obj.write_async(round_ * 4096, bytes([round_ + 1]) * 4096))
    assert obj.read(0, 3 * 4096) == b"".join(bytes([r + 1]) * 4096 for r in range(3))
    assert len(obj._client._queues) == 1  # the queues of closed loops were freed


def test_an_object_closes_after_its_loop_stopped_with_io_in_flight(start_ost):
    server = start_ost()
    with rawstor.Client(timeout_ms=5000) as client:
        target = client.create(server.location, MB)
        obj = client.open(target)
        obj.write(0, b"x" * 4096)
        server.pause()

        async def main():
            # Submitted and never awaited: asyncio.run cancels the task and
            # closes the loop while the server sits on the read.
            asyncio.ensure_future(obj.read_async(0, 4096))
            await asyncio.sleep(0.05)

        asyncio.run(main())
        assert obj._in_flight == 1
        server.resume()
        obj.close()  # drains the stopped loop's queue instead of EBUSY forever
        assert obj.closed
        client.remove(target)
