"""Fixtures: clients, and real rawstor-ost servers on loopback ports they
pick, with their stores in pytest's temporary directories.

The server binary is $RAWSTOR_OST, by default target/release/rawstor-ost
of this checkout (`make build`)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

import rawstor

REPO = Path(__file__).resolve().parents[3]
OST_BINARY = Path(os.environ.get("RAWSTOR_OST", REPO / "target" / "release" / "rawstor-ost"))
MDT_BINARY = OST_BINARY.parent / "rawstor-mdt"
MB = 1 << 20


class Ost:
    """A rawstor-ost process serving a store in `root` (or, as `Ost.mdt`,
    a rawstor-mdt keeping its records there)."""

    scheme = "ost"

    def __init__(self, root: Path, *extra: str):
        root.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            self.command(root, extra),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "RAWSTOR_LOG": "quiet"},
        )
        line = self.process.stdout.readline()
        if not line.startswith("listening on "):
            self.stop()
            raise RuntimeError(f"rawstor-ost did not start: {line!r} {self.process.stderr.read()}")
        self.address = line.split()[-1]
        self.location = f"{self.scheme}://{self.address}"

    @staticmethod
    def command(root: Path, extra: tuple) -> list[str]:
        return [str(OST_BINARY), "--bind", "127.0.0.1:0", *extra, f"file://{root}"]

    def pause(self) -> None:
        """SIGSTOP: the server stops answering but keeps its connections."""
        self.process.send_signal(signal.SIGSTOP)
        state = Path(f"/proc/{self.process.pid}/stat")
        deadline = time.monotonic() + 5
        while state.read_text().split(")")[1].split()[0] != "T":
            assert time.monotonic() < deadline, "rawstor-ost did not stop"
            time.sleep(0.01)

    def resume(self) -> None:
        self.process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture
def start_ost(tmp_path):
    """Starts servers for one test and stops them after it."""
    started = []

    def start(name: str = "ost") -> Ost:
        server = Ost(tmp_path / name)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="module")
def module_osts(tmp_path_factory):
    """Two servers shared by the tests of a module."""
    servers = [Ost(tmp_path_factory.mktemp(f"ost{i}")) for i in range(2)]
    yield servers
    for server in servers:
        server.stop()


class Mdt(Ost):
    """A rawstor-mdt process keeping its records in `root`."""

    scheme = "mdt"

    @staticmethod
    def command(root: Path, extra: tuple) -> list[str]:
        return [str(MDT_BINARY), "--bind", "127.0.0.1:0", "--data", str(root), *extra]


@pytest.fixture(scope="module")
def module_cluster(tmp_path_factory):
    """A rawstor-mdt with three OSTs registered to it, for a module."""
    mdt = Mdt(tmp_path_factory.mktemp("mdt"))
    osts = [
        Ost(tmp_path_factory.mktemp(f"cluster{i}"), "--mdt", mdt.location, "--domain", f"d{i}")
        for i in range(3)
    ]
    servers = [mdt, *osts]
    try:
        # The bindings have no cluster map call: ask the CLI.
        cli = [str(OST_BINARY.parent / "rawstor"), "cluster", mdt.location]
        deadline = time.monotonic() + 10
        while subprocess.run(cli, capture_output=True, text=True).stdout.count(" up ") < 3:
            assert time.monotonic() < deadline, "the OSTs did not register"
            time.sleep(0.1)
        yield mdt
    finally:
        for server in servers:
            server.stop()


def _location(kind, request, tmp_path, module_osts):
    if kind == "file":
        return f"file://{tmp_path / 'store'}"
    if kind == "ost":
        return module_osts[0].location
    if kind in ("mdt", "ec"):
        return request.getfixturevalue("module_cluster").location
    return ",".join(server.location for server in module_osts)


@pytest.fixture(params=["file", "ost", "mirror", "mdt"])
def location(request, tmp_path, module_osts):
    """Each kind of location the library serves: a local store, one
    rawstor-ost, a mirror over two of them, and an mdt:// cluster
    (replicas:3 on three OSTs)."""
    return _location(request.param, request, tmp_path, module_osts)


@pytest.fixture
def client():
    with rawstor.Client(timeout_ms=1000, retries=2) as c:
        yield c


@pytest.fixture(params=["file", "ost", "mirror", "mdt", "ec"])
def obj(request, client, tmp_path, module_osts):
    """A fresh 4 MiB object at each kind of location, open; on the mdt://
    cluster both replicas:3 and erasure-coded (ec:2+1)."""
    location = _location(request.param, request, tmp_path, module_osts)
    redundancy = "ec:2+1" if request.param == "ec" else None
    layout = rawstor.Layout(chunk_size="1M", redundancy=redundancy)
    target = client.create(location, 4 * MB, layout=layout)
    with client.open(target) as o:
        yield o
    client.remove(target)
