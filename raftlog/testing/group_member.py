"""A consumer-group member as a process of its own, for tests that kill or pause members.

``python -m raftlog.testing.group_member --bootstrap H:P[,H:P] --group G --topic T --out F``
joins group G, reads topic T and, after each poll, appends one line per record to F
(``rec <partition> <offset> <value>``), flushes and fsyncs F, then commits synchronously
(at-least-once: a record is on disk before its offset is committed). Other lines:
``assigned <p,p,...>`` after each rebalance, ``commit_failed <error>`` when a commit is
refused (e.g. after this member was paused past its session timeout), ``commit_ok``, and
``processing`` before a ``--process-ms`` pause between writing records and committing.
It runs until killed or until ``--max-s`` seconds pass.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import IO, Any

from raftlog.client import Consumer
from raftlog.errors import RaftlogError


def _line(out: IO[str], text: str) -> None:
    out.write(text + "\n")
    out.flush()
    os.fsync(out.fileno())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--group", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--session-ms", type=int, default=6000)
    ap.add_argument("--instance-id", default=None)
    ap.add_argument("--max-s", type=float, default=300.0)
    ap.add_argument(
        "--process-ms",
        type=int,
        default=0,
        help="sleep this long between writing a poll's records and committing them "
        "(writes a 'processing' line first): a window to pause the member in",
    )
    args = ap.parse_args(argv)
    with open(args.out, "a", encoding="utf-8") as out:

        class Listener:
            def on_partitions_assigned(self, partitions: Any) -> None:
                ps = ",".join(str(p) for _, p in sorted(partitions))
                _line(out, f"assigned {ps}")

        consumer = Consumer(
            args.bootstrap.split(","),
            group_id=args.group,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            session_timeout_ms=args.session_ms,
            heartbeat_interval_ms=max(500, args.session_ms // 4),
            group_instance_id=args.instance_id,
            client_id=f"member-{os.getpid()}",
        )
        consumer.subscribe([args.topic], listener=Listener())
        deadline = time.monotonic() + args.max_s
        try:
            while time.monotonic() < deadline:
                try:
                    records = consumer.poll(timeout_ms=500, max_records=200)
                except RaftlogError as e:
                    _line(out, f"poll_failed {e.code.name}")
                    continue
                if not records:
                    continue
                for r in records:
                    value = (r.value or b"").decode()
                    out.write(f"rec {r.partition} {r.offset} {value}\n")
                out.flush()
                os.fsync(out.fileno())
                if args.process_ms:
                    _line(out, "processing")
                    time.sleep(args.process_ms / 1000)
                try:
                    consumer.commit()
                    _line(out, "commit_ok")
                except RaftlogError as e:
                    _line(out, f"commit_failed {e.code.name}")
        finally:
            consumer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
