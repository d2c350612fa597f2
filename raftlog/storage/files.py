"""The file-system seam: every byte raftlog stores goes through ``FileSystem``.

Two implementations keep the same contract:

- ``OsFileSystem``: the real disk, through positional ``os.pwrite``/``os.pread`` on raw
  descriptors (no Python buffering, so what was written is what ``fsync`` covers).
- ``SimFileSystem``: in memory, for tests and the simulator. It knows, per file, which
  bytes the last ``fsync`` made durable and, per directory, which names the last directory
  fsync made durable. ``power_loss()`` cuts the world back to exactly that (optionally
  keeping a torn prefix of what was written after the last fsync), and faults (ENOSPC,
  EIO) can be injected on any operation.
- ``LedgerFileSystem`` and ``FaultInjectingFileSystem``: the real disk for scenarios of
  real processes, recording what each fsync made durable (``apply_power_loss`` replays a
  power loss from that ledger) and failing operations as a faults file says.

The contract the storage code relies on, which is what POSIX gives on a journaling file
system and what the simulation enforces:

1. Data written to a file is durable only after ``File.fsync()`` returns.
2. A created, renamed or deleted name is durable only after ``fsync_dir`` of its folder.
3. After a failed ``fsync`` nothing written since the last good one may be trusted: the
   caller must stop acknowledging (the log "fences" itself).
"""

from __future__ import annotations

import errno
import os
import random
import threading
import time
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Protocol


class File(Protocol):
    """An open file with positional I/O. Not safe for concurrent writers; ``fsync`` may run
    on another thread while one writer appends (the group-commit pattern)."""

    def pwrite(self, data: bytes | bytearray | memoryview, pos: int) -> None:
        """Write all of ``data`` at ``pos``; raises ``OSError`` (ENOSPC, EIO...)."""
        ...

    def pread(self, size: int, pos: int) -> bytes:
        """Up to ``size`` bytes at ``pos`` (fewer at the end of the file)."""
        ...

    def size(self) -> int: ...

    def truncate(self, size: int) -> None: ...

    def fsync(self) -> None: ...

    def close(self) -> None: ...


class FileSystem(Protocol):
    """Paths are ``str``; folders are created with ``makedirs``."""

    def open(self, path: str, *, create: bool = True) -> File:
        """Open for reading and writing; create an empty file when missing and ``create``."""
        ...

    def exists(self, path: str) -> bool: ...

    def listdir(self, path: str) -> list[str]:
        """Names in a folder, sorted."""
        ...

    def makedirs(self, path: str) -> None: ...

    def remove(self, path: str) -> None: ...

    def rename(self, src: str, dst: str) -> None:
        """Atomically replace ``dst`` by ``src``."""
        ...

    def fsync_dir(self, path: str) -> None: ...

    def rmdir(self, path: str) -> None: ...


def write_atomically(fs: FileSystem, path: str, data: bytes) -> None:
    """Replace ``path`` with ``data`` so that after a crash it holds the old or the new
    content, never a mix: write a temporary file, fsync it, rename, fsync the folder."""
    tmp = path + ".tmp"
    f = fs.open(tmp)
    try:
        f.truncate(0)
        f.pwrite(data, 0)
        f.fsync()
    finally:
        f.close()
    fs.rename(tmp, path)
    fs.fsync_dir(str(PurePosixPath(path).parent))


def read_whole(fs: FileSystem, path: str, *, max_bytes: int) -> bytes:
    """The content of a small file, refusing one larger than ``max_bytes``."""
    f = fs.open(path, create=False)
    try:
        size = f.size()
        if size > max_bytes:
            raise OSError(errno.EFBIG, f"{path} is {size} bytes, more than {max_bytes}")
        return f.pread(size, 0)
    finally:
        f.close()


# --------------------------------------------------------------------------- the real disk


class OsFile:
    __slots__ = ("_fd", "path")

    def __init__(self, path: str, create: bool) -> None:
        flags = os.O_RDWR | (os.O_CREAT if create else 0)
        self._fd = os.open(path, flags | getattr(os, "O_CLOEXEC", 0), 0o644)
        self.path = path

    def pwrite(self, data: bytes | bytearray | memoryview, pos: int) -> None:
        view = memoryview(data)
        while view:
            n = os.pwrite(self._fd, view, pos)
            view = view[n:]
            pos += n

    def pread(self, size: int, pos: int) -> bytes:
        return os.pread(self._fd, size, pos)

    def size(self) -> int:
        return os.fstat(self._fd).st_size

    def truncate(self, size: int) -> None:
        os.ftruncate(self._fd, size)

    def fsync(self) -> None:
        os.fsync(self._fd)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def fileno(self) -> int:
        """The raw descriptor, for ``os.sendfile`` on the serving path."""
        return self._fd


class OsFileSystem:
    """The real file system."""

    def open(self, path: str, *, create: bool = True) -> File:
        return OsFile(path, create)

    def exists(self, path: str) -> bool:
        return os.path.exists(path)

    def listdir(self, path: str) -> list[str]:
        return sorted(os.listdir(path))

    def makedirs(self, path: str) -> None:
        os.makedirs(path, exist_ok=True)

    def remove(self, path: str) -> None:
        os.remove(path)

    def rename(self, src: str, dst: str) -> None:
        os.replace(src, dst)

    def fsync_dir(self, path: str) -> None:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def rmdir(self, path: str) -> None:
        os.rmdir(path)


# ------------------------------------------------------------- the real disk, with a ledger


class _LedgerFile(OsFile):
    __slots__ = ("_ledger",)

    def __init__(self, path: str, create: bool, ledger: LedgerFileSystem) -> None:
        super().__init__(path, create)
        self._ledger = ledger

    def fsync(self) -> None:
        super().fsync()
        self._ledger.record("F", self.path, str(self.size()))


class LedgerFileSystem(OsFileSystem):
    """The real disk, plus a ledger of what each fsync made durable, for power-loss tests
    of real processes: after the process is killed, ``apply_power_loss(ledger)`` cuts every
    file back to its last fsynced length and removes names no folder fsync covered.

    The ledger is appended without fsync: it only has to survive a process kill (the page
    cache does), never a real power loss. Limitation: a name replaced by a rename that no
    folder fsync covered cannot get its old content back (raftlog fsyncs the folder right
    after every rename, so that window is not exercised)."""

    def __init__(self, ledger_path: str) -> None:
        self.ledger_path = os.path.abspath(ledger_path)
        self._ledger_fd = os.open(
            self.ledger_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644
        )
        self._ledger_lock = threading.Lock()

    def record(self, kind: str, *fields: str) -> None:
        line = "\t".join((kind, *fields)) + "\n"
        with self._ledger_lock:
            os.write(self._ledger_fd, line.encode())

    def open(self, path: str, *, create: bool = True) -> File:
        return _LedgerFile(os.path.abspath(path), create, self)

    def rename(self, src: str, dst: str) -> None:
        super().rename(src, dst)
        self.record_external_rename(src, dst)

    def record_external_rename(self, src: str, dst: str) -> None:
        """Note a rename done by code outside the seam (a library), for the ledger."""
        self.record("R", os.path.abspath(src), os.path.abspath(dst))

    def fsync_dir(self, path: str) -> None:
        super().fsync_dir(path)
        folder = os.path.abspath(path)
        self.record("D", folder, *sorted(os.listdir(folder)))


def apply_power_loss(
    ledger_path: str, rng: random.Random | None = None, *, torn: bool = False
) -> dict[str, int]:
    """Cut the files a ``LedgerFileSystem`` wrote back to what was durable, as a power loss
    would (the writing process must be dead). With ``torn`` and ``rng``, a random part of
    each file's unsynced tail survives. Returns {path: bytes removed}.

    Afterwards the ledger is rewritten to describe the surviving state as durable (a D
    line per known folder with its listing, an F line per surviving file with its size),
    so that a broker restarted with the same ledger appends to it and a later power loss
    cuts only what was written after the restart."""
    durable: dict[str, int] = {}
    listings: dict[str, list[str]] = {}
    with open(ledger_path, encoding="utf-8") as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if parts[0] == "F" and len(parts) == 3:
                durable[parts[1]] = int(parts[2])
            elif parts[0] == "R" and len(parts) == 3:
                if parts[1] in durable:
                    durable[parts[2]] = durable.pop(parts[1])
                else:
                    durable.pop(parts[2], None)
            elif parts[0] == "D" and len(parts) >= 2:
                listings[parts[1]] = parts[2:]
    cut: dict[str, int] = {}
    for folder, names in sorted(listings.items()):
        if not os.path.isdir(folder):
            continue
        for name in sorted(os.listdir(folder)):
            path = os.path.join(folder, name)
            if os.path.isdir(path):
                continue
            if name not in names:
                cut[path] = os.path.getsize(path)
                os.remove(path)
                continue
            size = os.path.getsize(path)
            keep = durable.get(path, 0)
            if size > keep:
                if torn and rng is not None:
                    keep += rng.randrange(size - keep + 1)
                os.truncate(path, keep)
                cut[path] = size - keep
    _rewrite_ledger(ledger_path, durable, listings)
    return cut


def _rewrite_ledger(
    ledger_path: str, durable: dict[str, int], listings: dict[str, list[str]]
) -> None:
    """Replace the ledger with one that describes what survived a power loss as durable,
    so that a broker restarted on the same ledger, and a later power loss, start from
    it: a D line per known folder with its current listing, an F line per surviving file
    (in a known folder, or with an F line before) with its current size."""
    lines: list[str] = []
    files: set[str] = {p for p in durable if os.path.isfile(p)}
    for folder in sorted(listings):
        if not os.path.isdir(folder):
            continue
        names = sorted(os.listdir(folder))
        lines.append("\t".join(("D", folder, *names)) + "\n")
        files.update(
            os.path.join(folder, n) for n in names if os.path.isfile(os.path.join(folder, n))
        )
    lines.extend(f"F\t{path}\t{os.path.getsize(path)}\n" for path in sorted(files))
    tmp = ledger_path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.writelines(lines)
    os.replace(tmp, ledger_path)


# ------------------------------------------------------------- injected disk faults

FAULT_OPS = ("pwrite", "fsync", "fsync_dir", "open", "rename", "truncate")
"""The operations ``FaultInjectingFileSystem`` can fail."""
FAULTS_FILE_BYTES_MAX = 64 * 1024


@dataclass(frozen=True, slots=True)
class DiskFaults:
    """Which operations fail, with which errno, on paths containing ``path_contains``.
    ``errors`` maps an op of ``FAULT_OPS`` to an errno; an op not in it is healthy."""

    errors: tuple[tuple[str, int], ...] = ()
    path_contains: str = ""

    def error_for(self, op: str, path: str) -> int | None:
        if self.path_contains not in path:
            return None
        for name, err in self.errors:
            if name == op:
                return err
        return None

    def describe(self) -> str:
        """``fsync:EIO,pwrite:ENOSPC path_contains=...`` or ``none``."""
        if not self.errors:
            return "none"
        ops = ",".join(f"{op}:{errno.errorcode.get(e, e)}" for op, e in self.errors)
        return f"{ops} path_contains={self.path_contains!r}" if self.path_contains else ops


def parse_disk_faults(text: str | bytes) -> DiskFaults:
    """A faults file's content, e.g. ``{"fsync": "EIO", "pwrite": "ENOSPC",
    "path_contains": ""}``: each op of ``FAULT_OPS`` absent or null (healthy) or an errno
    name (``"EIO"``, ``"ENOSPC"``, any name of the ``errno`` module). ``ValueError`` saying
    what is wrong otherwise."""
    import json

    try:
        doc = json.loads(text)
    except (ValueError, UnicodeDecodeError) as e:
        raise ValueError(f"not JSON: {e}") from None
    if not isinstance(doc, dict):
        raise ValueError("a disk faults file must hold a JSON object")
    unknown = sorted(set(doc) - {*FAULT_OPS, "path_contains"})
    if unknown:
        raise ValueError(f"unknown keys {unknown}; known: {', '.join(FAULT_OPS)}, path_contains")
    path_contains = doc.get("path_contains") or ""
    if not isinstance(path_contains, str):
        raise ValueError(f"path_contains must be a string, got {path_contains!r}")
    errors: list[tuple[str, int]] = []
    for op in FAULT_OPS:
        name = doc.get(op)
        if name is None:
            continue
        err = getattr(errno, name, None) if isinstance(name, str) and name.isupper() else None
        if not isinstance(err, int) or err not in errno.errorcode:
            raise ValueError(f"{op} must be an errno name like EIO or ENOSPC, or null: {name!r}")
        errors.append((op, err))
    return DiskFaults(tuple(errors), path_contains)


def read_disk_faults(path: str) -> DiskFaults:
    """The faults in ``path``; none when the file does not exist. ``ValueError`` for bad
    content, ``OSError`` when it cannot be read."""
    try:
        with open(path, "rb") as f:
            data = f.read(FAULTS_FILE_BYTES_MAX + 1)
    except FileNotFoundError:
        return DiskFaults()
    if len(data) > FAULTS_FILE_BYTES_MAX:
        raise ValueError(f"{path} is larger than {FAULTS_FILE_BYTES_MAX} bytes")
    return parse_disk_faults(data)


class _FaultyFile:
    """A file of ``FaultInjectingFileSystem``: checks the faults before each operation."""

    __slots__ = ("_fs", "_inner", "path")

    def __init__(self, fs: FaultInjectingFileSystem, inner: File, path: str) -> None:
        self._fs = fs
        self._inner = inner
        self.path = path

    def pwrite(self, data: bytes | bytearray | memoryview, pos: int) -> None:
        self._fs.check("pwrite", self.path)
        self._inner.pwrite(data, pos)

    def pread(self, size: int, pos: int) -> bytes:
        return self._inner.pread(size, pos)

    def size(self) -> int:
        return self._inner.size()

    def truncate(self, size: int) -> None:
        self._fs.check("truncate", self.path)
        self._inner.truncate(size)

    def fsync(self) -> None:
        # raises before the inner fsync: a ledger below records no F line for it
        self._fs.check("fsync", self.path)
        self._inner.fsync()

    def close(self) -> None:
        self._inner.close()

    def fileno(self) -> int:
        fileno = getattr(self._inner, "fileno", None)
        if fileno is None:
            raise OSError(errno.EBADF, "this file has no descriptor", self.path)
        return int(fileno())


class FaultInjectingFileSystem:
    """Wraps a file system (``OsFileSystem`` or ``LedgerFileSystem``) and fails the
    operations its current ``DiskFaults`` name with ``OSError(errno, strerror, path)``,
    before the wrapped operation runs (a failed fsync records nothing in a ledger).

    The faults change at run time: ``set_faults``, or ``reload(path)`` which re-reads a
    faults file (see ``parse_disk_faults``) only when its mtime or size changed. Thread
    safe: fsyncs run on worker threads while the event loop changes the faults."""

    def __init__(self, inner: FileSystem, faults: DiskFaults | None = None) -> None:
        self.inner = inner
        self._faults = faults or DiskFaults()
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self.injected = 0

    @property
    def faults(self) -> DiskFaults:
        with self._lock:
            return self._faults

    def set_faults(self, faults: DiskFaults) -> bool:
        """Replace the faults; True when they changed."""
        with self._lock:
            changed = faults != self._faults
            self._faults = faults
            return changed

    def reload(self, path: str) -> bool:
        """Re-read the faults file ``path`` if its mtime or size changed since the last
        look (a missing file = no faults); True when the faults changed. ``ValueError``
        or ``OSError`` for a file that cannot be used (the faults stay as they were)."""
        try:
            st = os.stat(path)
            stamp: tuple[int, int] | None = (st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            stamp = None
        if stamp is not None and stamp == self._stamp:
            return False
        self._stamp = stamp
        return self.set_faults(read_disk_faults(path) if stamp is not None else DiskFaults())

    def check(self, op: str, path: str) -> None:
        err = self.faults.error_for(op, path)
        if err is not None:
            with self._lock:
                self.injected += 1
            raise OSError(err, os.strerror(err), path)

    # ---- FileSystem
    def open(self, path: str, *, create: bool = True) -> File:
        self.check("open", path)
        return _FaultyFile(self, self.inner.open(path, create=create), path)

    def exists(self, path: str) -> bool:
        return self.inner.exists(path)

    def listdir(self, path: str) -> list[str]:
        return self.inner.listdir(path)

    def makedirs(self, path: str) -> None:
        self.inner.makedirs(path)

    def remove(self, path: str) -> None:
        self.inner.remove(path)

    def rename(self, src: str, dst: str) -> None:
        self.check("rename", src)
        self.inner.rename(src, dst)

    def fsync_dir(self, path: str) -> None:
        self.check("fsync_dir", path)
        self.inner.fsync_dir(path)

    def rmdir(self, path: str) -> None:
        self.inner.rmdir(path)

    def record_external_rename(self, src: str, dst: str) -> None:
        """Passed to a ledger below (see ``LedgerFileSystem``); nothing otherwise."""
        note = getattr(self.inner, "record_external_rename", None)
        if note is not None:
            note(src, dst)


# ------------------------------------------------------------------------ the simulated disk


@dataclass
class _Inode:
    data: bytearray = field(default_factory=bytearray)
    durable: bytes = b""
    # set by a failed fsync: what was written may be lost even though reads still see it
    poisoned: bool = False


@dataclass
class Fault:
    """One injected failure: ``op`` in {"pwrite", "fsync", "open", "rename", "remove",
    "fsync_dir", "truncate"}; applies to paths containing ``path_contains``; fires
    ``count`` times (-1 = forever)."""

    op: str
    err: int
    path_contains: str = ""
    count: int = 1


class SimFile:
    __slots__ = ("_closed", "_fs", "_inode", "path")

    def __init__(self, fs: SimFileSystem, path: str, inode: _Inode) -> None:
        self._fs = fs
        self._inode = inode
        self.path = path
        self._closed = False

    def _check(self, op: str) -> None:
        if self._closed:
            raise ValueError(f"I/O on closed file {self.path}")
        self._fs._maybe_fail(op, self.path)

    def pwrite(self, data: bytes | bytearray | memoryview, pos: int) -> None:
        with self._fs._lock:
            self._check("pwrite")
            d = self._inode.data
            if pos > len(d):
                d.extend(bytes(pos - len(d)))
            d[pos : pos + len(data)] = data
            self._fs.stats["pwrite"] += 1

    def pread(self, size: int, pos: int) -> bytes:
        with self._fs._lock:
            self._check("pread")
            return bytes(self._inode.data[pos : pos + size])

    def size(self) -> int:
        with self._fs._lock:
            return len(self._inode.data)

    def truncate(self, size: int) -> None:
        with self._fs._lock:
            self._check("truncate")
            d = self._inode.data
            if size < len(d):
                del d[size:]
            else:
                d.extend(bytes(size - len(d)))

    def fsync(self) -> None:
        if self._fs.fsync_delay_s:
            time.sleep(self._fs.fsync_delay_s)  # a disk takes time; lets appends pile up
        with self._fs._lock:
            self._check("fsync")
            self._inode.durable = bytes(self._inode.data)
            self._inode.poisoned = False
            self._fs.stats["fsync"] += 1

    def close(self) -> None:
        self._closed = True


class SimFileSystem:
    """An in-memory file system that knows what is durable (see the module docstring).

    Thread-safe: one lock guards everything, so a test can run a flusher thread.
    """

    def __init__(self, *, fsync_delay_s: float = 0.0) -> None:
        self.fsync_delay_s = fsync_delay_s
        self._lock = threading.RLock()
        self._names: dict[str, _Inode] = {}  # the namespace as processes see it
        self._durable_names: dict[str, _Inode] = {}  # the namespace after a power loss
        self._dirs: set[str] = {"/"}
        self._faults: list[Fault] = []
        self.stats: dict[str, int] = {"fsync": 0, "fsync_dir": 0, "pwrite": 0}

    # ---- fault injection
    def inject(self, fault: Fault) -> None:
        with self._lock:
            self._faults.append(fault)

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def _maybe_fail(self, op: str, path: str) -> None:
        for f in self._faults:
            if f.op == op and f.path_contains in path and f.count != 0:
                if f.count > 0:
                    f.count -= 1
                if op == "fsync" and path in self._names:
                    # Linux may drop the dirty pages after a failed fsync
                    self._names[path].poisoned = True
                raise OSError(f.err, f"injected {errno.errorcode.get(f.err, f.err)} on {op}", path)

    # ---- power loss
    def power_loss(self, rng: random.Random | None = None, *, torn: bool = False) -> None:
        """Cut every file back to what was fsynced and every folder back to the names its
        last directory fsync saw. With ``torn``, a random prefix of each file's unsynced
        suffix survives (a torn tail), as a real disk may leave it."""
        with self._lock:
            self._names = dict(self._durable_names)
            seen: set[int] = set()
            for path in sorted(self._names):
                inode = self._names[path]
                if id(inode) in seen:
                    continue
                seen.add(id(inode))
                keep = inode.durable
                if torn and rng is not None and len(inode.data) > len(keep):
                    extra = inode.data[len(keep) :] if inode.data[: len(keep)] == keep else b""
                    keep = keep + bytes(extra[: rng.randrange(len(extra) + 1)])
                inode.data = bytearray(keep)
                inode.durable = bytes(keep)
                inode.poisoned = False
            self._faults.clear()

    def durable_size(self, path: str) -> int:
        with self._lock:
            return len(self._names[path].durable)

    # ---- corruption helpers for tests
    def corrupt(self, path: str, pos: int, xor: int = 0xFF) -> None:
        """Flip bits of one byte, in memory and on "disk" (as a bad sector would)."""
        with self._lock:
            inode = self._names[path]
            inode.data[pos] ^= xor
            if pos < len(inode.durable):
                b = bytearray(inode.durable)
                b[pos] ^= xor
                inode.durable = bytes(b)

    def raw(self, path: str) -> bytes:
        with self._lock:
            return bytes(self._names[path].data)

    # ---- FileSystem
    def _parent(self, path: str) -> str:
        return str(PurePosixPath(path).parent)

    def open(self, path: str, *, create: bool = True) -> File:
        with self._lock:
            self._maybe_fail("open", path)
            inode = self._names.get(path)
            if inode is None:
                if not create:
                    raise FileNotFoundError(errno.ENOENT, "no such file", path)
                if self._parent(path) not in self._dirs:
                    raise FileNotFoundError(errno.ENOENT, "no such folder", self._parent(path))
                inode = _Inode()
                self._names[path] = inode
            return SimFile(self, path, inode)

    def exists(self, path: str) -> bool:
        with self._lock:
            return path in self._names or path in self._dirs

    def listdir(self, path: str) -> list[str]:
        with self._lock:
            if path not in self._dirs:
                raise FileNotFoundError(errno.ENOENT, "no such folder", path)
            names = {PurePosixPath(p).name for p in self._names if self._parent(p) == path}
            names |= {
                PurePosixPath(d).name for d in self._dirs if d != path and self._parent(d) == path
            }
            return sorted(names)

    def makedirs(self, path: str) -> None:
        # folders are treated as durable at once: raftlog creates them once per partition
        # and fsyncs their parent, which this model does not need to track
        with self._lock:
            p = PurePosixPath(path)
            for q in [p, *p.parents]:
                self._dirs.add(str(q))

    def remove(self, path: str) -> None:
        with self._lock:
            self._maybe_fail("remove", path)
            if path not in self._names:
                raise FileNotFoundError(errno.ENOENT, "no such file", path)
            del self._names[path]

    def rename(self, src: str, dst: str) -> None:
        with self._lock:
            self._maybe_fail("rename", src)
            if src not in self._names:
                raise FileNotFoundError(errno.ENOENT, "no such file", src)
            self._names[dst] = self._names.pop(src)

    def fsync_dir(self, path: str) -> None:
        with self._lock:
            self._maybe_fail("fsync_dir", path)
            for p in [p for p in self._durable_names if self._parent(p) == path]:
                del self._durable_names[p]
            for p, inode in self._names.items():
                if self._parent(p) == path:
                    self._durable_names[p] = inode
            self.stats["fsync_dir"] += 1

    def rmdir(self, path: str) -> None:
        with self._lock:
            if any(self._parent(p) == path for p in self._names):
                raise OSError(errno.ENOTEMPTY, "folder not empty", path)
            self._dirs.discard(path)
