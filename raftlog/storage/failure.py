"""What a broker does when its disk fails: it stops at once (fail-stop).

A failed write or fsync leaves the durable state of a file unknown: the kernel may have
dropped the dirty pages it could not write, and a later fsync can succeed without them
("fsyncgate"). Nothing written after that can be trusted to be durable, so a broker must
not acknowledge another record nor count another metadata entry as persisted. Like Kafka
with its only log directory offline (``Runtime.halt``) and PostgreSQL on a failed fsync,
the broker halts: it logs one CRITICAL line saying what failed and exits with
``DISK_FAILURE_EXIT`` (74, ``EX_IOERR``) without running any more of its code. On restart it
recovers from what is really on disk (torn tails are cut, the Raft log re-replicates what a
follower lost).

The layers below the broker never halt by themselves: a partition replica fences itself
and raises, the metadata quorum reports the error; the broker process chooses to halt
(``halt_on_disk_failure``), so tests that run those layers in-process keep running.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from typing import NoReturn

log = logging.getLogger("raftlog.storage")

DISK_FAILURE_EXIT = 74
"""The broker's exit code after a disk failure (sysexits' EX_IOERR)."""


def halt_on_disk_failure(where: str, error: BaseException) -> NoReturn:
    """Log the failure and end the process now (no cleanup: nothing more is written)."""
    log.critical(
        "event=disk_failure_halt where=%s error=%r: the broker stops so that nothing it "
        "acknowledges depends on a failed write; fix the disk (space, errors in dmesg), "
        "then start it again (it recovers from what is on disk)",
        where,
        error,
    )
    for handler in logging.getLogger().handlers:
        with contextlib.suppress(Exception):  # the process ends anyway
            handler.flush()
    try:
        sys.stderr.flush()
    finally:
        os._exit(DISK_FAILURE_EXIT)
