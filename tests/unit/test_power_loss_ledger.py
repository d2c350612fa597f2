"""``LedgerFileSystem`` + ``apply_power_loss`` across repeated power losses: the ledger is
rewritten after a cut to describe what survived as durable, so a broker restarted on the
same ledger path and a second power loss cut only what was written after the restart."""

from __future__ import annotations

import os
import random

from raftlog.storage.files import LedgerFileSystem, apply_power_loss


def _write(fs: LedgerFileSystem, path: str, data: bytes, pos: int, *, sync: bool) -> None:
    f = fs.open(path)
    try:
        f.pwrite(data, pos)
        if sync:
            f.fsync()
    finally:
        f.close()


def _ledger_lines(path: str) -> list[list[str]]:
    with open(path, encoding="utf-8") as f:
        return [line.rstrip("\n").split("\t") for line in f]


def test_two_power_losses_with_a_restart_in_between(tmp_path: object) -> None:
    root = str(tmp_path)
    data = os.path.join(root, "data")
    os.makedirs(data)
    ledger = os.path.join(root, "ledger")
    a, b, c = (os.path.join(data, n) for n in ("a", "b", "c"))

    # first life: a and b durable (names too), then unsynced tails and a new unsynced name
    fs = LedgerFileSystem(ledger)
    _write(fs, a, b"A" * 100, 0, sync=True)
    _write(fs, b, b"B" * 50, 0, sync=True)
    fs.fsync_dir(data)
    _write(fs, a, b"x" * 30, 100, sync=False)
    _write(fs, c, b"C" * 10, 0, sync=False)  # never covered by a folder fsync

    cut = apply_power_loss(ledger)
    assert cut == {a: 30, c: 10}
    assert os.path.getsize(a) == 100 and os.path.getsize(b) == 50 and not os.path.exists(c)
    lines = _ledger_lines(ledger)
    assert ["D", data, "a", "b"] in lines
    assert ["F", a, "100"] in lines and ["F", b, "50"] in lines

    # second life on the same ledger path: only a is touched; b is left alone
    fs = LedgerFileSystem(ledger)
    _write(fs, a, b"y" * 20, 100, sync=True)
    fs.fsync_dir(data)  # a D line for the folder again, listing b too
    _write(fs, a, b"z" * 5, 120, sync=False)
    cut = apply_power_loss(ledger)
    # before the fix b had no F line after a restart and was cut to 0
    assert cut == {a: 5}
    assert os.path.getsize(b) == 50
    with open(a, "rb") as f:
        assert f.read() == b"A" * 100 + b"y" * 20

    # and a third power loss with nothing written in between changes nothing
    assert apply_power_loss(ledger) == {}
    assert os.path.getsize(a) == 120 and os.path.getsize(b) == 50


def test_a_torn_tail_survives_and_then_counts_as_durable(tmp_path: object) -> None:
    root = str(tmp_path)
    data = os.path.join(root, "data")
    os.makedirs(data)
    ledger = os.path.join(root, "ledger")
    a = os.path.join(data, "a")
    fs = LedgerFileSystem(ledger)
    _write(fs, a, b"A" * 100, 0, sync=True)
    fs.fsync_dir(data)
    _write(fs, a, b"t" * 1000, 100, sync=False)

    rng = random.Random(7)
    expected_keep = 100 + random.Random(7).randrange(1000 + 1)
    cut = apply_power_loss(ledger, rng, torn=True)
    assert os.path.getsize(a) == expected_keep
    assert cut == {a: 1100 - expected_keep}
    assert ["F", a, str(expected_keep)] in _ledger_lines(ledger)

    # the torn prefix that survived is now the durable state: a second loss keeps it
    fs = LedgerFileSystem(ledger)
    f = fs.open(a)
    f.pwrite(b"u" * 10, expected_keep)
    f.close()
    assert apply_power_loss(ledger) == {a: 10}
    assert os.path.getsize(a) == expected_keep


def test_a_rename_covered_by_a_folder_fsync_survives_two_losses(tmp_path: object) -> None:
    root = str(tmp_path)
    data = os.path.join(root, "data")
    os.makedirs(data)
    ledger = os.path.join(root, "ledger")
    fs = LedgerFileSystem(ledger)
    tmp, final = os.path.join(data, "state.tmp"), os.path.join(data, "state")
    _write(fs, tmp, b"S" * 8, 0, sync=True)
    fs.rename(tmp, final)
    fs.fsync_dir(data)
    assert apply_power_loss(ledger) == {}
    fs = LedgerFileSystem(ledger)  # restart: nothing written
    assert apply_power_loss(ledger) == {}
    with open(final, "rb") as f:
        assert f.read() == b"S" * 8
