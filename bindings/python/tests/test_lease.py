"""Writer leases of mdt:// objects: a writer cut off from the rawstor-mdt
keeps its lease as it sees it, so the OSTs must refuse its changes once
another writer has taken over (fencing)."""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import subprocess
import threading

import pytest
from conftest import OST_BINARY

import rawstor

BLOCK = 4096


class Proxy:
    """Forwards TCP connections from a loopback port to `address` until
    frozen; then nothing more gets through either way, and the connections
    stay open (a network partition, as the client sees one)."""

    def __init__(self, address: str):
        host, port = address.rsplit(":", 1)
        self.target = (host, int(port))
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self.listener.getsockname()[1]}"
        self.frozen = threading.Event()
        self.sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            self.sockets.append(client)
            if self.frozen.is_set():
                continue
            server = socket.create_connection(self.target)
            self.sockets.append(server)
            for source, sink in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        while True:
            try:
                data = source.recv(1 << 16)
                if not data:
                    sink.shutdown(socket.SHUT_WR)
                    return
                if not self.frozen.is_set():
                    sink.sendall(data)
            except OSError:
                return

    def freeze(self) -> None:
        self.frozen.set()

    def close(self) -> None:
        self.listener.close()
        for sock in self.sockets:
            sock.close()


def create(mdt_location: str, layout: str) -> str:
    cli = [str(OST_BINARY.parent / "rawstor"), "create", mdt_location, "--size", "8M"]
    done = subprocess.run([*cli, "--layout", layout], capture_output=True, text=True, check=True)
    return done.stdout.strip()


def breaking_client() -> rawstor.Client:
    """A client whose writers take over the lease of another."""
    os.environ["RAWSTOR_OPTS_BREAK_LEASE"] = "1"
    try:
        return rawstor.Client(timeout_ms=1000, retries=2)
    finally:
        del os.environ["RAWSTOR_OPTS_BREAK_LEASE"]


@pytest.mark.parametrize("layout", ["replicas:3", "ec:2+1"])
def test_a_writer_cut_off_from_the_mdt_is_fenced_out_when_another_takes_over(
    module_cluster, layout
):
    target = create(module_cluster.location, layout)
    proxy = Proxy(module_cluster.address)
    old = rawstor.Client(timeout_ms=1000, retries=2)
    new = breaking_client()
    # The old writer reaches the MDT through the proxy, the OSTs directly.
    cut_off = old.open(target.replace(module_cluster.address, proxy.address))
    try:
        cut_off.write(0, b"o" * BLOCK)
        proxy.freeze()
        taking_over = new.open(target)
        taking_over.write(0, b"n" * BLOCK)
        # The old writer still holds the lease as far as it knows (its
        # renewals cannot get through), but the OSTs refuse it.
        for offset in (0, BLOCK):
            with pytest.raises(OSError, match="another writer took over") as caught:
                cut_off.write(offset, b"x" * BLOCK)
            assert caught.value.errno == errno.ENOLCK
        assert taking_over.read(0, 2 * BLOCK) == b"n" * BLOCK + bytes(BLOCK)
        # The new writer goes on, and nothing the old one tried landed.
        taking_over.write(BLOCK, b"m" * BLOCK)
        taking_over.close()
        with new.open(target) as reader:
            assert reader.read(0, 2 * BLOCK) == b"n" * BLOCK + b"m" * BLOCK
        info = subprocess.run(
            [str(OST_BINARY.parent / "rawstor"), "info", target],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert ", stale" not in info, info
    finally:
        proxy.close()
        # Its lease cannot be given back through the closed proxy.
        with contextlib.suppress(OSError):
            cut_off.close()
        old.close()
        new.close()
