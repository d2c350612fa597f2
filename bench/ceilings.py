"""Ceilings for the end-to-end benchmarks, measured on this machine in the same run.

    python -m bench.ceilings [--mib 256] [--disk-mib 64] [--batch-bytes 65536]

- ``loopback_mbps``: raw TCP over 127.0.0.1 from Python: one sender thread doing
  ``sendall`` of 64 KiB buffers, one receiver thread doing ``recv_into`` (both release
  the GIL while in the kernel), MB/s of bytes received;
- ``disk_fsync_mbps``: sequential ``os.write`` of one batch then ``os.fsync``, batch after
  batch, into a fresh file under the data folder (``bench.storage.bench_raw_append`` with
  one fsync per batch);
- ``fsync_latency_ms``: the latency of one small ``os.write`` + ``os.fsync`` (p50, p99),
  the least an acknowledged record can wait for its disk;
- ``loopback_rtt_ms``: one request/answer round trip of a small message over a TCP
  connection on 127.0.0.1 between two Python threads (p50, p99).

The floor of an end-to-end latency with acks=all is fsync + one round trip (replicas fsync
in parallel, and producer, leader, followers and consumer each add at least a hop); the
real path has more hops, so the floor is a lower bound, not a target.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import tempfile
import threading
import time

from .figures import percentile
from .storage import bench_raw_append, make_batch

MiB = 1024 * 1024
CHUNK = 64 * 1024


def loopback_mbps(total_bytes: int = 256 * MiB, max_s: float = 5.0) -> float:
    """MB/s of one TCP stream over 127.0.0.1 (sender and receiver threads in this
    process), stopping at ``total_bytes`` or after ``max_s`` seconds."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    received = [0]
    done = threading.Event()

    def receive() -> None:
        conn, _ = listener.accept()
        buf = bytearray(CHUNK)
        view = memoryview(buf)
        with conn:
            while True:
                n = conn.recv_into(view)
                if n == 0:
                    break
                received[0] += n
        done.set()

    thread = threading.Thread(target=receive, name="loopback-sink", daemon=True)
    thread.start()
    payload = os.urandom(CHUNK)
    sender = socket.create_connection(("127.0.0.1", port), timeout=10)
    sent = 0
    t0 = time.perf_counter()
    deadline = t0 + max_s
    try:
        while sent < total_bytes and time.perf_counter() < deadline:
            sender.sendall(payload)
            sent += CHUNK
    finally:
        sender.shutdown(socket.SHUT_WR)
        sender.close()
    done.wait(timeout=30)
    elapsed = time.perf_counter() - t0
    thread.join(timeout=5)
    listener.close()
    return received[0] / elapsed / 1e6


def disk_fsync_mbps(
    folder: str, batch_bytes: int = 64 * 1024, total_bytes: int = 64 * MiB
) -> float:
    """MB/s of sequential write + fsync after every ``batch_bytes`` write, in ``folder``
    (a fresh subfolder is made and removed)."""
    sub = tempfile.mkdtemp(prefix="ceiling-disk-", dir=folder)
    try:
        # a single record batch of about batch_bytes (header + opaque body)
        batch = make_batch(1, max(1, batch_bytes - 81))
        elapsed, n = bench_raw_append(sub, batch, total_bytes, 1)
        return n * len(batch) / elapsed / 1e6
    finally:
        shutil.rmtree(sub, ignore_errors=True)


def fsync_latency_ms(
    folder: str, write_bytes: int = 1024, count: int = 200, max_s: float = 5.0
) -> dict[str, float]:
    """p50 / p99 / max of ``count`` appends of ``write_bytes`` each followed by ``fsync``, in
    a fresh file under ``folder`` (stops early after ``max_s`` seconds)."""
    sub = tempfile.mkdtemp(prefix="ceiling-fsync-", dir=folder)
    samples: list[float] = []
    try:
        fd = os.open(os.path.join(sub, "f"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            data = os.urandom(write_bytes)
            deadline = time.perf_counter() + max_s
            for _ in range(count):
                t0 = time.perf_counter()
                os.write(fd, data)
                os.fsync(fd)
                samples.append((time.perf_counter() - t0) * 1000)
                if time.perf_counter() > deadline:
                    break
        finally:
            os.close(fd)
    finally:
        shutil.rmtree(sub, ignore_errors=True)
    return _spread(samples)


def loopback_rtt_ms(
    count: int = 2000, message_bytes: int = 128, max_s: float = 5.0
) -> dict[str, float]:
    """p50 / p99 / max of ``count`` request/answer round trips over one TCP connection on
    127.0.0.1 (an echo thread in this process; stops early after ``max_s`` seconds)."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]

    def echo() -> None:
        conn, _ = listener.accept()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with conn:
            while True:
                data = conn.recv(65536)
                if not data:
                    break
                conn.sendall(data)

    thread = threading.Thread(target=echo, name="loopback-echo", daemon=True)
    thread.start()
    samples: list[float] = []
    payload = os.urandom(message_bytes)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        deadline = time.perf_counter() + max_s
        for _ in range(count):
            t0 = time.perf_counter()
            sock.sendall(payload)
            got = 0
            while got < message_bytes:
                chunk = sock.recv(65536)
                if not chunk:
                    raise ConnectionError("the echo thread closed the connection")
                got += len(chunk)
            samples.append((time.perf_counter() - t0) * 1000)
            if time.perf_counter() > deadline:
                break
    thread.join(timeout=5)
    listener.close()
    return _spread(samples)


def _spread(samples: list[float]) -> dict[str, float]:
    return {
        "p50": percentile(samples, 50),
        "p99": percentile(samples, 99),
        "max": max(samples),
        "samples": float(len(samples)),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--mib", type=int, default=256, help="MiB sent over loopback")
    ap.add_argument("--disk-mib", type=int, default=64, help="MiB written with fsync")
    ap.add_argument("--batch-bytes", type=int, default=64 * 1024)
    ap.add_argument("--dir", default=".")
    args = ap.parse_args()
    lo = loopback_mbps(args.mib * MiB)
    disk = disk_fsync_mbps(args.dir, args.batch_bytes, args.disk_mib * MiB)
    print(f"loopback TCP, one stream, 64 KiB sends: {lo:9.1f} MB/s")
    print(f"disk write+fsync per {args.batch_bytes} B:   {disk:9.1f} MB/s")
    fs = fsync_latency_ms(args.dir)
    rtt = loopback_rtt_ms()
    print(f"write+fsync of 1 KiB:  p50 {fs['p50']:.3f} ms, p99 {fs['p99']:.3f} ms")
    print(f"loopback round trip:   p50 {rtt['p50']:.3f} ms, p99 {rtt['p99']:.3f} ms")


if __name__ == "__main__":
    main()
