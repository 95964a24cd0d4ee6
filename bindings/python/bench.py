"""4K random reads from Python: the bindings against os.pread on a plain
file of the same filesystem, side by side in one run.

Contenders run in rotation, each round for --seconds, and each figure is
the median of --rounds. The asyncio contenders keep --depth reads in
flight. Servers are started on loopback and stopped at the end.

    python bench.py [--seconds 1] [--rounds 3] [--depth 32]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import rawstor

SIZE = 64 << 20
BLOCK = 4096
REPO = Path(__file__).resolve().parents[2]
OST = os.environ.get("RAWSTOR_OST", str(REPO / "target" / "release" / "rawstor-ost"))


def offsets(count: int) -> list[int]:
    rng = random.Random(42)
    return [rng.randrange(SIZE // BLOCK) * BLOCK for _ in range(count)]


def timed_loop(seconds: float, step) -> float:
    """Calls step(i) until `seconds` pass; returns calls per second."""
    done, started = 0, time.perf_counter()
    deadline = started + seconds
    while True:
        for _ in range(64):
            step(done)
            done += 1
        now = time.perf_counter()
        if now >= deadline:
            return done / (now - started)


def plain_pread(path: str, seconds: float) -> float:
    fd = os.open(path, os.O_RDONLY)
    where = offsets(1 << 16)
    try:
        return timed_loop(seconds, lambda i: os.pread(fd, BLOCK, where[i & 0xFFFF]))
    finally:
        os.close(fd)


def rawstor_sync(obj: rawstor.Object, seconds: float) -> float:
    where = offsets(1 << 16)
    buffer = bytearray(BLOCK)
    return timed_loop(seconds, lambda i: obj.readinto(where[i & 0xFFFF], buffer))


def rawstor_async(obj: rawstor.Object, seconds: float, depth: int) -> float:
    where = offsets(1 << 16)

    async def worker(first: int, deadline: float) -> int:
        buffer, done, i = bytearray(BLOCK), 0, first
        while time.perf_counter() < deadline:
            await obj.readinto_async(where[i & 0xFFFF], buffer)
            done, i = done + 1, i + depth
        return done

    async def main() -> float:
        started = time.perf_counter()
        counts = await asyncio.gather(*(worker(w, started + seconds) for w in range(depth)))
        return sum(counts) / (time.perf_counter() - started)

    return asyncio.run(main())


class Server:
    def __init__(self, root: Path):
        root.mkdir()
        self.process = subprocess.Popen(
            [OST, "--bind", "127.0.0.1:0", f"file://{root}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self.location = "ost://" + self.process.stdout.readline().split()[-1]

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--depth", type=int, default=32)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="rawstor-pybench-") as tmp, rawstor.Client() as client:
        work = Path(tmp)
        plain = work / "plain"
        plain.write_bytes(os.urandom(SIZE))
        server = Server(work / "ost")
        try:
            objects = {}
            for kind, location in [
                ("file://", f"file://{work / 'store'}"),
                ("ost://", server.location),
            ]:
                obj = client.open(client.create(location, SIZE))
                for at in range(0, SIZE, 1 << 20):
                    obj.write(at, os.urandom(1 << 20))
                obj.flush()
                objects[kind] = obj
            contenders = {"os.pread, plain file": lambda: plain_pread(str(plain), args.seconds)}
            for kind, obj in objects.items():
                contenders[f"rawstor {kind} readinto"] = lambda o=obj: rawstor_sync(o, args.seconds)
                contenders[f"rawstor {kind} asyncio QD{args.depth}"] = lambda o=obj: rawstor_async(
                    o, args.seconds, args.depth
                )
            results: dict[str, list[float]] = {name: [] for name in contenders}
            names = list(contenders)
            for round_ in range(args.rounds):
                for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
                    results[name].append(contenders[name]())
            for obj in objects.values():
                obj.close()
        finally:
            server.stop()

    base = statistics.median(results[names[0]])
    print(f"4K random reads from Python over a 64 MiB object; median of {args.rounds} rounds")
    print(f"{'contender':<32} {'IOPS':>10} {'us/io':>8} {'vs os.pread':>12}")
    for name in names:
        iops = statistics.median(results[name])
        print(f"{name:<32} {iops:>10,.0f} {1e6 / iops:>8.1f} {iops / base:>11.2f}x")


if __name__ == "__main__":
    main()
