"""``FaultInjectingFileSystem``: injected errors from a faults file, over the real disk or
the power-loss ledger; a failed fsync records nothing durable."""

from __future__ import annotations

import errno
import json
import os

import pytest

from raftlog.storage.files import (
    DiskFaults,
    FaultInjectingFileSystem,
    LedgerFileSystem,
    OsFileSystem,
    apply_power_loss,
    parse_disk_faults,
    read_disk_faults,
)


def _faults_file(path: str, doc: object) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(doc, f)


def test_parse_faults() -> None:
    f = parse_disk_faults('{"fsync": "EIO", "pwrite": "ENOSPC", "path_contains": "orders"}')
    assert f.error_for("fsync", "/d/orders-0/x.log") == errno.EIO
    assert f.error_for("pwrite", "/d/orders-0/x.log") == errno.ENOSPC
    assert f.error_for("open", "/d/orders-0/x.log") is None
    assert f.error_for("fsync", "/d/@metadata/metadata.journal") is None
    assert "fsync:EIO" in f.describe() and "orders" in f.describe()
    assert parse_disk_faults('{"fsync": null}') == DiskFaults()
    assert parse_disk_faults("{}").describe() == "none"


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("[", "not JSON"),
        ("[]", "JSON object"),
        ('{"fsink": "EIO"}', "unknown keys"),
        ('{"fsync": "EBOGUS"}', "errno name"),
        ('{"fsync": 5}', "errno name"),
        ('{"fsync": "eio"}', "errno name"),
        ('{"path_contains": 3}', "path_contains"),
    ],
)
def test_bad_faults_files_say_what_is_wrong(text: str, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        parse_disk_faults(text)


def test_missing_file_is_no_faults(tmp_path: object) -> None:
    assert read_disk_faults(os.path.join(str(tmp_path), "nope.json")) == DiskFaults()


def test_each_op_fails_with_its_errno_and_the_path(tmp_path: object) -> None:
    root = str(tmp_path)
    fs = FaultInjectingFileSystem(OsFileSystem())
    path = os.path.join(root, "f")
    f = fs.open(path)
    f.pwrite(b"hello", 0)
    f.fsync()
    for op, name in [("pwrite", "ENOSPC"), ("fsync", "EIO"), ("truncate", "EIO")]:
        fs.set_faults(parse_disk_faults(json.dumps({op: name})))
        with pytest.raises(OSError) as e:
            if op == "pwrite":
                f.pwrite(b"x", 5)
            elif op == "fsync":
                f.fsync()
            else:
                f.truncate(0)
        assert e.value.errno == getattr(errno, name)
        assert e.value.strerror == os.strerror(getattr(errno, name))
        assert e.value.filename == path
    fs.set_faults(parse_disk_faults('{"open": "EIO", "rename": "EIO", "fsync_dir": "EIO"}'))
    with pytest.raises(OSError):
        fs.open(path)
    with pytest.raises(OSError):
        fs.rename(path, path + "2")
    with pytest.raises(OSError):
        fs.fsync_dir(root)
    assert fs.injected == 6
    # reads are never failed, and healing restores every operation
    assert f.pread(5, 0) == b"hello"
    fs.set_faults(DiskFaults())
    f.pwrite(b"!", 5)
    f.fsync()
    f.close()
    fs.rename(path, path + "2")
    fs.fsync_dir(root)
    with open(path + "2", "rb") as check:
        assert check.read() == b"hello!"


def test_path_contains_limits_the_faults(tmp_path: object) -> None:
    root = str(tmp_path)
    fs = FaultInjectingFileSystem(
        OsFileSystem(), parse_disk_faults('{"fsync": "EIO", "path_contains": "bad"}')
    )
    good = fs.open(os.path.join(root, "good"))
    bad = fs.open(os.path.join(root, "bad"))
    good.fsync()
    with pytest.raises(OSError):
        bad.fsync()
    good.close()
    bad.close()


def test_reload_reads_the_file_only_when_it_changed(tmp_path: object) -> None:
    root = str(tmp_path)
    faults = os.path.join(root, "faults.json")
    fs = FaultInjectingFileSystem(OsFileSystem())
    assert not fs.reload(faults), "a missing file is no faults: no change"
    _faults_file(faults, {"fsync": "EIO"})
    assert fs.reload(faults) and fs.faults.error_for("fsync", "x") == errno.EIO
    assert not fs.reload(faults), "same mtime and size: not read again"
    _faults_file(faults, {"fsync": "EIO", "pwrite": "ENOSPC"})
    assert fs.reload(faults) and fs.faults.error_for("pwrite", "x") == errno.ENOSPC
    with open(faults, "w") as f:
        f.write("{not json")
    with pytest.raises(ValueError):
        fs.reload(faults)
    assert fs.faults.error_for("pwrite", "x") == errno.ENOSPC, "a bad file keeps the faults"
    os.remove(faults)
    assert fs.reload(faults) and fs.faults == DiskFaults()


def test_a_failed_fsync_records_no_durable_length_in_the_ledger(tmp_path: object) -> None:
    root = str(tmp_path)
    data = os.path.join(root, "data")
    os.makedirs(data)
    ledger = os.path.join(root, "ledger")
    fs = FaultInjectingFileSystem(LedgerFileSystem(ledger))
    path = os.path.join(data, "seg.log")
    f = fs.open(path)
    f.pwrite(b"a" * 10, 0)
    f.fsync()
    fs.fsync_dir(data)
    f.pwrite(b"b" * 10, 10)
    fs.set_faults(parse_disk_faults('{"fsync": "EIO"}'))
    with pytest.raises(OSError):
        f.fsync()
    f.close()
    with open(ledger, encoding="utf-8") as lf:
        sizes = [line.split("\t")[2].strip() for line in lf if line.startswith("F\t")]
    assert sizes == ["10"], "the failed fsync must not be recorded"
    assert apply_power_loss(ledger) == {path: 10}
    assert os.path.getsize(path) == 10


def test_external_renames_reach_the_ledger_below(tmp_path: object) -> None:
    root = str(tmp_path)
    ledger = os.path.join(root, "ledger")
    fs = FaultInjectingFileSystem(LedgerFileSystem(ledger))
    fs.record_external_rename(os.path.join(root, "a"), os.path.join(root, "b"))
    with open(ledger, encoding="utf-8") as lf:
        assert lf.read().startswith("R\t")
    FaultInjectingFileSystem(OsFileSystem()).record_external_rename("a", "b")  # no-op
