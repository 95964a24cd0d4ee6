"""Client, Object and the values they return."""

from __future__ import annotations

import asyncio
import ctypes
import dataclasses
import errno
import threading
from collections.abc import Iterator
from typing import Any

from . import _ffi
from ._buffers import Pinned, index, readable, writable
from ._buffers import size as _size
from ._errors import check, from_errno, last_error, strerror

lib = _ffi.lib


@dataclasses.dataclass(frozen=True)
class Options:
    """Client options; ``None`` takes the library's default, itself
    overridden by the ``RAWSTOR_OPTS_*`` environment variables."""

    #: Depth of queues (async operations in flight per client and loop).
    queue_depth: int | None = None
    #: Deadline of one network request, in milliseconds.
    timeout_ms: int | None = None
    #: Attempts of a failed network request before it fails.
    retries: int | None = None
    #: Objects fetched per page by :meth:`Client.list`.
    list_limit: int | None = None
    #: Longest wait, in milliseconds, for a copy or shard that lags behind
    #: the others before it is recorded stale (or, for a read, another is
    #: asked).
    straggler_ms: int | None = None


@dataclasses.dataclass(frozen=True)
class Layout:
    """How a new object is cut into chunks, and kept redundant.

    On an ``mdt://`` location, ``redundancy`` picks replication or erasure
    coding. Elsewhere the location decides: a comma list such as
    ``"ost://a:7777,ost://b:7777"`` mirrors.
    """

    #: Chunk size in bytes (a power of two, 64K to 1G) or text like ``"1M"``;
    #: ``None`` for the library's default (64 MiB).
    chunk_size: int | str | None = None
    #: ``"replicas:N"`` or ``"ec:K+M"`` (K data and M parity shards) for an
    #: object a rawstor-mdt places; ``None`` for ``"replicas:3"``.
    redundancy: str | None = None


@dataclasses.dataclass(frozen=True)
class ObjectInfo:
    """An object's identity, size and layout."""

    uuid: str
    size: int
    chunk_size: int
    block_size: int
    #: The target to open it by (set for :meth:`Client.list` entries and
    #: :attr:`Object.info`).
    target: str | None = None

    @classmethod
    def _from_c(cls, info: _ffi.ObjectInfo, target: str | None) -> ObjectInfo:
        return cls(info.uuid.decode(), info.size, info.chunk_size, info.block_size, target)


def _text(value: Any, what: str) -> bytes:
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a str, not {type(value).__name__}")
    if "\0" in value:
        raise ValueError(f"{what} must not contain NUL characters")
    return value.encode()


def _elements(location: str) -> list[str]:
    """A location's elements: split at commas that are not escaped (``\\,``)."""
    elements, current, escaped = [], [], False
    for char in location:
        if escaped:
            current.append(char)
            escaped = False
        elif char == "\\":
            current.append(char)
            escaped = True
        elif char == ",":
            elements.append("".join(current))
            current = []
        else:
            current.append(char)
    elements.append("".join(current))
    return elements


def target_of(location: str, uuid: str) -> str:
    """The target of object ``uuid`` at ``location``: the UUID appended to
    every element (``ost://a:1,ost://b:1`` -> ``ost://a:1/U,ost://b:1/U``)."""
    return ",".join(f"{element.rstrip('/')}/{uuid}" for element in _elements(location))


class Client:
    """A rawstor instance: creates, opens, lists and removes objects.

    >>> with rawstor.Client() as client:                       # doctest: +SKIP
    ...     target = client.create("file:///var/lib/rawstor", "64M")
    ...     with client.open(target) as obj:
    ...         obj.write(0, b"hello".ljust(4096, b"\\0"))
    ...         obj.read(0, 5)
    b'hello'

    A client may be shared by threads; each call drops the GIL while the
    library works.
    """

    def __init__(self, options: Options | None = None, **overrides: int | None):
        options = dataclasses.replace(options or Options(), **overrides)
        raw = _ffi.Options()
        check(lib.rawstor_options_init(ctypes.byref(raw)))
        for field in dataclasses.fields(Options):
            value = getattr(options, field.name)
            if value is not None:
                number = index(value, field.name)
                if number == 0 or number >= 1 << 32:
                    raise ValueError(f"{field.name} must be between 1 and 2**32-1: {number}")
                setattr(raw, field.name, number)
        self.options = Options(
            raw.queue_depth, raw.timeout_ms, raw.retries, raw.list_limit, raw.straggler_ms
        )
        handle = ctypes.c_void_p()
        check(lib.rawstor_new(ctypes.byref(raw), ctypes.byref(handle)))
        self._handle: ctypes.c_void_p | None = handle
        self._queues: dict[asyncio.AbstractEventLoop, _AsyncQueue] = {}
        self._queues_lock = threading.Lock()

    def _live(self) -> ctypes.c_void_p:
        if self._handle is None:
            raise ValueError("operation on a closed rawstor client")
        return self._handle

    def create(
        self,
        location: str,
        size: int | str,
        *,
        layout: Layout | None = None,
        uuid: str | None = None,
    ) -> str:
        """Creates an object of ``size`` bytes (a multiple of 4096, or text
        like ``"64M"``) at ``location`` and returns its target."""
        spec = _ffi.CreateSpec(_size(size), 0, None)
        redundancy = None
        if layout is not None:
            if not isinstance(layout, Layout):
                raise TypeError(f"layout must be a rawstor.Layout, not {type(layout).__name__}")
            if layout.chunk_size is not None:
                spec.chunk_size = _size(layout.chunk_size, "chunk_size")
            if layout.redundancy is not None:
                redundancy = _text(layout.redundancy, "redundancy")
        if uuid is not None:
            spec.uuid = _text(uuid, "uuid")
        target = ctypes.create_string_buffer(_ffi.TARGET_MAX)
        check(
            lib.rawstor_object_create_layout(
                self._live(),
                _text(location, "location"),
                ctypes.byref(spec),
                redundancy,
                target,
                _ffi.TARGET_MAX,
            )
        )
        return target.value.decode()

    def open(self, target: str) -> Object:
        """Opens an object by its target; use it as a context manager."""
        handle = ctypes.c_void_p()
        check(lib.rawstor_object_open(self._live(), _text(target, "target"), ctypes.byref(handle)))
        # The object's own queue for blocking calls the C API has no
        # function for; made now so that the object outlives the client.
        queue = ctypes.c_void_p()
        rc = lib.rawstor_queue_new(self._live(), 1, ctypes.byref(queue))
        if rc < 0:
            error = last_error(rc)
            lib.rawstor_object_close(handle)
            raise error
        return Object(self, handle, target, queue)

    def remove(self, target: str) -> None:
        """Removes an object (it must not be open in this client)."""
        check(lib.rawstor_object_remove(self._live(), _text(target, "target")))

    def info(self, target: str) -> ObjectInfo:
        """The size and layout of the object at ``target``."""
        with self.open(target) as obj:
            return obj.info

    def layout(self, target: str) -> str:
        """How the object at ``target`` is kept redundant: ``"replicas:N"``
        or ``"ec:K+M"`` (on mdt://, what the MDT recorded; elsewhere N is
        the number of locations in the target)."""
        text = ctypes.create_string_buffer(_ffi.LAYOUT_MAX)
        name = _text(target, "target")
        check(lib.rawstor_target_layout(self._live(), name, text, _ffi.LAYOUT_MAX))
        return text.value.decode()

    def list_pages(
        self, location: str, *, page_size: int | None = None
    ) -> Iterator[list[ObjectInfo]]:
        """Pages of the objects at ``location``, sorted by UUID, each a
        list of at most ``page_size`` (default: the ``list_limit`` option)
        entries; a page is fetched when the iterator reaches it."""
        limit = index(page_size, "page_size") if page_size is not None else self.options.list_limit
        if limit == 0:
            raise ValueError("page_size must be positive")
        encoded = _text(location, "location")
        entries = (_ffi.ObjectInfo * limit)()
        count = ctypes.c_size_t()
        after = None
        while True:
            check(
                lib.rawstor_object_list(
                    self._live(), encoded, after, entries, limit, ctypes.byref(count)
                )
            )
            page = [
                ObjectInfo._from_c(entry, target_of(location, entry.uuid.decode()))
                for entry in entries[: count.value]
            ]
            if page:
                yield page
            if count.value < limit:
                return
            after = entries[count.value - 1].uuid

    def list(self, location: str, *, page_size: int | None = None) -> Iterator[ObjectInfo]:
        """The objects at ``location``, sorted by UUID, fetched a page at a time."""
        for page in self.list_pages(location, page_size=page_size):
            yield from page

    def _async_queue(self) -> _AsyncQueue:
        loop = asyncio.get_running_loop()
        self._release_stopped_loops()
        with self._queues_lock:
            queue = self._queues.get(loop)
            if queue is None:
                depth = self.options.queue_depth or 128
                queue = self._queues[loop] = _AsyncQueue(self._live(), loop, depth)
            return queue

    def _release_stopped_loops(self) -> None:
        """Frees the queues of event loops that were closed (asyncio.run
        returned), waiting for what they still had in flight."""
        with self._queues_lock:
            stopped = [loop for loop in self._queues if loop.is_closed()]
            queues = [self._queues.pop(loop) for loop in stopped]
        for queue in queues:
            queue.close()

    def close(self) -> None:
        """Frees the instance; operations still in flight finish first.
        Objects opened by it stay usable until they are closed. Call it
        on the thread of the event loop that did async I/O, or after that
        loop has stopped."""
        with self._queues_lock:
            queues, self._queues = list(self._queues.values()), {}
        for queue in queues:
            queue.close()
        handle, self._handle = self._handle, None
        if handle is not None:
            lib.rawstor_free(handle)

    @property
    def closed(self) -> bool:
        return self._handle is None

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_handle", None) is not None:
            self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"library {_ffi.LIBRARY_PATH}"
        return f"<rawstor.Client {state}>"


class Object:
    """An open object: byte-addressed reads and writes, checksummed by the
    library. Made by :meth:`Client.open`; close it (or use ``with`` /
    ``async with``). Offsets and lengths are in bytes; an I/O past the end
    fails (objects never grow by writing: use :meth:`resize`)."""

    def __init__(
        self, client: Client, handle: ctypes.c_void_p, target: str, sync_queue: ctypes.c_void_p
    ):
        self._client = client
        self._handle: ctypes.c_void_p | None = handle
        self.target = target
        self._sync_queue: ctypes.c_void_p | None = sync_queue
        self._sync_lock = threading.Lock()
        self._in_flight = 0
        self._idle_waiters: list[asyncio.Future[None]] = []

    def _live(self) -> ctypes.c_void_p:
        if self._handle is None:
            raise ValueError(f"I/O operation on a closed object ({self.target})")
        return self._handle

    # -- description --------------------------------------------------------

    @property
    def info(self) -> ObjectInfo:
        raw = _ffi.ObjectInfo()
        check(lib.rawstor_object_stat(self._live(), ctypes.byref(raw)))
        return ObjectInfo._from_c(raw, self.target)

    @property
    def size(self) -> int:
        return self.info.size

    @property
    def uuid(self) -> str:
        return self.info.uuid

    @property
    def closed(self) -> bool:
        return self._handle is None

    def resize(self, size: int | str, *, shrink: bool = False) -> None:
        """Changes the size (a multiple of 4096); shrinking needs ``shrink=True``."""
        flags = _ffi.RESIZE_SHRINK if shrink else 0
        check(lib.rawstor_object_resize(self._live(), _size(size), flags))

    # -- blocking I/O ---------------------------------------------------------

    def readinto(self, offset: int, buffer: Any) -> int:
        """Reads ``len(buffer)`` bytes at ``offset`` into a writable buffer
        (bytearray, memoryview, numpy array) in place; returns the count."""
        offset = index(offset, "offset")
        address, length, _keep = writable(buffer)
        if length == 0:
            return 0
        return check(lib.rawstor_object_pread(self._live(), address, length, offset))

    def read(self, offset: int, length: int) -> bytes:
        """Reads ``length`` bytes at ``offset``."""
        buffer = bytearray(index(length, "length"))
        self.readinto(offset, buffer)
        return bytes(buffer)

    def write(self, offset: int, data: Any, *, fua: bool = False) -> int:
        """Writes a bytes-like object at ``offset``; returns the count. With
        ``fua=True`` the data is durable when this returns."""
        offset = index(offset, "offset")
        if type(data) is bytes and not fua:  # passed in place by ctypes
            if not data:
                return 0
            return check(lib.rawstor_object_pwrite(self._live(), data, len(data), offset))
        address, length, _keep = readable(data)
        if length == 0:
            return 0
        if fua:
            return self._sync(_ffi.OP_WRITE, offset, length, address, _ffi.SQE_FUA)
        return check(lib.rawstor_object_pwrite(self._live(), address, length, offset))

    def flush(self) -> None:
        """Makes every completed write durable."""
        check(lib.rawstor_object_flush(self._live()))

    def discard(self, offset: int, length: int) -> None:
        """Frees a range; it reads as zeros afterwards."""
        self._sync(_ffi.OP_DISCARD, index(offset, "offset"), index(length, "length"), None)

    def write_zeroes(self, offset: int, length: int) -> None:
        """Makes a range read as zeros."""
        self._sync(_ffi.OP_WRITE_ZEROES, index(offset, "offset"), index(length, "length"), None)

    def _sync(
        self, opcode: int, offset: int, length: int, address: int | None, flags: int = 0
    ) -> int:
        """One queue operation, waited for (the C API has no blocking call for it)."""
        with self._sync_lock:
            sqe = _ffi.Sqe(opcode, flags, 0, 0, self._live(), offset, length, address, 0)
            check(lib.rawstor_queue_submit(self._sync_queue, ctypes.byref(sqe), 1))
            cqe = _ffi.Cqe()
            while check(lib.rawstor_queue_reap(self._sync_queue, ctypes.byref(cqe), 1, 1, -1)) == 0:
                pass
            why = _why(self._sync_queue, cqe)
        if cqe.result < 0:
            raise _failure(self, opcode, offset, length, cqe.result, why)
        return cqe.result

    # -- asyncio --------------------------------------------------------------

    async def readinto_async(self, offset: int, buffer: Any) -> int:
        """Like :meth:`readinto`, many at once: the I/O goes through the
        client's queue for the running loop, whose eventfd the loop watches."""
        pinned = writable(buffer)
        return await self._start(_ffi.OP_READ, index(offset, "offset"), pinned[1], pinned)

    async def read_async(self, offset: int, length: int) -> bytes:
        buffer = bytearray(index(length, "length"))
        await self.readinto_async(offset, buffer)
        return bytes(buffer)

    async def write_async(self, offset: int, data: Any, *, fua: bool = False) -> int:
        pinned = readable(data)
        flags = _ffi.SQE_FUA if fua else 0
        return await self._start(_ffi.OP_WRITE, index(offset, "offset"), pinned[1], pinned, flags)

    async def flush_async(self) -> None:
        await self._start(_ffi.OP_FLUSH, 0, 0, None)

    async def discard_async(self, offset: int, length: int) -> None:
        await self._start(_ffi.OP_DISCARD, index(offset, "offset"), index(length, "length"), None)

    async def write_zeroes_async(self, offset: int, length: int) -> None:
        await self._start(
            _ffi.OP_WRITE_ZEROES, index(offset, "offset"), index(length, "length"), None
        )

    def _start(
        self, opcode: int, offset: int, length: int, pinned: Pinned | None, flags: int = 0
    ) -> asyncio.Future[int]:
        self._live()
        if pinned is not None and pinned[1] == 0:
            done = asyncio.get_running_loop().create_future()
            done.set_result(0)
            return done
        return self._client._async_queue().start(self, opcode, offset, length, pinned, flags)

    def _finished(self) -> None:
        self._in_flight -= 1
        if self._in_flight == 0:
            waiters, self._idle_waiters = self._idle_waiters, []
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)

    # -- closing --------------------------------------------------------------

    def close(self) -> None:
        """Flushes and closes. Raises ``OSError(EBUSY)`` while async
        operations on it are in flight (await them, or use ``async with``)."""
        if self._handle is None:
            return
        self._client._release_stopped_loops()
        if self._in_flight:
            raise from_errno(
                errno.EBUSY,
                f"{self.target}: {self._in_flight} operation(s) in flight: await them first",
            )
        with self._sync_lock:
            rc = lib.rawstor_object_close(self._handle)
            if rc == -errno.EBUSY:  # still open: keep the handle
                raise last_error(rc)
            self._handle = None
            lib.rawstor_queue_free(self._sync_queue)
            self._sync_queue = None
            check(rc)

    async def aclose(self) -> None:
        """Waits for the async operations on this object, then closes it."""
        self._client._release_stopped_loops()
        while self._in_flight:
            waiter = asyncio.get_running_loop().create_future()
            self._idle_waiters.append(waiter)
            await waiter
        self.close()

    def __enter__(self) -> Object:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> Object:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __del__(self) -> None:
        if getattr(self, "_handle", None) is not None and not self._in_flight:
            try:
                self.close()
            except OSError:
                pass

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<rawstor.Object {self.target} {state}>"


_OP_NAMES = {
    _ffi.OP_READ: "read",
    _ffi.OP_WRITE: "write",
    _ffi.OP_FLUSH: "flush",
    _ffi.OP_DISCARD: "discard",
    _ffi.OP_WRITE_ZEROES: "write-zeroes",
}


def _why(queue: int, cqe: Any) -> str | None:
    """The library's message for a failed completion just reaped."""
    if cqe.result >= 0:
        return None
    why = lib.rawstor_queue_error(queue, cqe.user_data)
    return why.decode(errors="replace") if why else None


def _failure(
    obj: Object, opcode: int, offset: int, length: int, result: int, why: str | None = None
) -> OSError:
    """The exception for a queue completion: the library's message when it
    gave one (the completion itself carries only an errno)."""
    code = -result
    if why:
        return from_errno(code, f"{obj.target}: {why}")
    name = _OP_NAMES[opcode]
    what = name if opcode == _ffi.OP_FLUSH else f"{name} of {length} bytes at offset {offset}"
    if code == errno.ENXIO:
        try:
            what += f" is past the end of the object ({obj.size} bytes)"
        except (OSError, ValueError):  # closed meanwhile, or stat failed
            what += " is past the end of the object"
    return from_errno(code, f"{obj.target}: {what}: {strerror(code)}")


class _AsyncQueue:
    """A library queue driven by one asyncio loop: submissions are batched
    until the loop's next turn, and the queue's eventfd, watched with
    ``add_reader``, says when completions wait. Beyond the queue's depth,
    operations wait their turn in order."""

    REAP_BATCH = 256

    def __init__(self, client: ctypes.c_void_p, loop: asyncio.AbstractEventLoop, depth: int):
        handle = ctypes.c_void_p()
        check(lib.rawstor_queue_new(client, depth, ctypes.byref(handle)))
        self._handle: ctypes.c_void_p | None = handle
        self._loop = loop
        self._depth = depth
        self._eventfd = check(lib.rawstor_queue_eventfd(handle))
        self._next = 1
        # user_data -> (future, object, operation, buffer kept alive)
        self._in_flight: dict[
            int, tuple[asyncio.Future[int], Object, tuple[int, int, int], Any]
        ] = {}
        self._waiting: list[tuple[int, _ffi.Sqe]] = []
        self._submitted = 0
        self._submit_scheduled = False
        self._cqes = (_ffi.Cqe * self.REAP_BATCH)()
        loop.add_reader(self._eventfd, self._reap)

    def start(
        self, obj: Object, opcode: int, offset: int, length: int, pinned: Pinned | None, flags: int
    ) -> asyncio.Future[int]:
        token, self._next = self._next, self._next + 1
        address = pinned[0] if pinned is not None else None
        sqe = _ffi.Sqe(opcode, flags, 0, 0, obj._live(), offset, length, address, token)
        future = self._loop.create_future()
        self._in_flight[token] = (future, obj, (opcode, offset, length), pinned)
        obj._in_flight += 1
        self._waiting.append((token, sqe))
        if not self._submit_scheduled:
            self._submit_scheduled = True
            self._loop.call_soon(self._submit)
        return future

    def _submit(self) -> None:
        self._submit_scheduled = False
        count = min(len(self._waiting), self._depth - self._submitted)
        if count <= 0 or self._handle is None:
            return
        batch = (_ffi.Sqe * count)(*(sqe for _, sqe in self._waiting[:count]))
        accepted = lib.rawstor_queue_submit(self._handle, batch, count)
        if accepted < 0:
            # Only EAGAIN is possible, and the depth is tracked here; fail
            # loudly rather than leave the operations waiting forever.
            error = from_errno(
                accepted, f"rawstor queue refused a submission: {strerror(-accepted)}"
            )
            for token, _ in self._waiting[:count]:
                self._complete(token, error)
            del self._waiting[:count]
            return
        self._submitted += accepted
        del self._waiting[:accepted]

    def _reap(self) -> None:
        while self._handle is not None:
            count = check(lib.rawstor_queue_reap(self._handle, self._cqes, self.REAP_BATCH, 0, 0))
            for cqe in self._cqes[:count]:
                self._submitted -= 1
                self._complete(cqe.user_data, cqe.result, _why(self._handle, cqe))
            if count < self.REAP_BATCH:
                break
        if self._waiting and not self._submit_scheduled:
            self._submit()

    def _complete(self, token: int, result: int | OSError, why: str | None = None) -> None:
        future, obj, (opcode, offset, length), _buffer = self._in_flight.pop(token)
        obj._finished()
        if future.done() or self._loop.is_closed():
            return  # nobody awaits it any more; the buffer is free now
        if isinstance(result, OSError):
            future.set_exception(result)
        elif result < 0:
            future.set_exception(_failure(obj, opcode, offset, length, result, why))
        else:
            future.set_result(result)

    def close(self) -> None:
        """Waits for what is in flight (each request has its deadline), then
        frees the queue; operations not yet submitted fail with ECANCELED.
        Runs on the loop's thread, or after the loop has stopped."""
        handle = self._handle
        if handle is None:
            return
        for token, _ in self._waiting:
            self._complete(token, from_errno(errno.ECANCELED, "rawstor client closed"))
        self._waiting = []
        while self._submitted:
            count = check(
                lib.rawstor_queue_reap(handle, self._cqes, self.REAP_BATCH, self._submitted, -1)
            )
            for cqe in self._cqes[:count]:
                self._submitted -= 1
                self._complete(cqe.user_data, cqe.result, _why(handle, cqe))
        if not self._loop.is_closed():
            self._loop.remove_reader(self._eventfd)
        self._handle = None
        lib.rawstor_queue_free(handle)
