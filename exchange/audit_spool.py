"""Durable hand-off of exchange-call audit rows: a per-process append-only spool file and a writer thread.

The thread that made an exchange call does not wait for the database. It appends the row, one JSON line,
to this process's spool file with a single ``write(2)`` on an ``O_APPEND`` descriptor: once the call has
returned, the row is in the kernel's page cache and survives the process being killed (``kill -9``).
A writer thread reads the lines after its checkpoint, inserts them in one statement per batch and advances
the checkpoint (a side file). When the database cannot be reached the rows simply wait in the file.

A process holds an exclusive ``flock`` on its file for its lifetime; the kernel drops it when the process
dies, however it dies. Any process with a spool (when it opens its own, then every ``ORPHAN_SCAN_SECONDS``)
and the prune job take over files whose lock they can get: they insert the lines after the dead
process's checkpoint and delete the file. Rows carry a unique ``call_id`` and are inserted with
``ON CONFLICT DO NOTHING``, so a row handed over twice (a crash between an insert and its checkpoint) is
written once. Spool directories are per database (engine, host, port, name), so a file is only drained
into the database its rows were meant for. docs/decisions/0208-exchange-audit-spool.md.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import fcntl
import hashlib
import itertools
import json
import os
import re
import socket
import threading
import time
import uuid
from pathlib import Path

import structlog
from django.conf import settings
from django.db import connection, transaction
from django.utils.dateparse import parse_datetime

from exchange.models import ExchangeCall
from ordermanager.core.services.db_backlog import DB_UNAVAILABLE

log = structlog.get_logger("exchange.audit")

SPOOL_SUFFIX, CKPT_SUFFIX, TMP_SUFFIX = ".spool", ".ckpt", ".tmp"
READ_CHUNK = 1 << 20  # bytes of spool per INSERT statement (a line longer than this goes alone)
ROTATE_BYTES = 4 << 20  # a file fully written to the database and this long is emptied
ORPHAN_SCAN_SECONDS = 30.0
# The writer waits this long after the first new row before inserting (unless flush() is waiting): the rows of
# every call meanwhile go in one statement, and the calling threads rarely compete with it for the GIL.
LINGER_SECONDS = 0.05
STALE_TMP_SECONDS = 3600.0
RETRY_FIRST, RETRY_MAX = 0.2, 5.0
EXIT_WAIT_SECONDS = 2.0  # at exit, the writer's last chance before the rows are left to the next process
# Column order of a spooled row; every line has every key (json_populate_recordset fills absent ones with NULL).
COLUMNS = (
    "call_id", "created_at", "method", "path", "params", "http_status", "ret_code", "ret_msg", "latency_ms",
    "attempt", "trace_id", "order_link_id", "error", "dry_run", "response_body", "response_bytes",
    "response_truncated",
)  # fmt: skip


def row_line(row: dict) -> bytes:
    """One spool line: the row as compact JSON (no raw newline can occur inside), newline-terminated."""
    return json.dumps(row, ensure_ascii=False, separators=(",", ":"), default=str).encode("utf-8") + b"\n"


def _db_key(db: dict) -> str:
    """The spool sub-directory of a database: a file is drained only into the database it was meant for."""
    ident = (str(db.get("ENGINE") or ""), str(db.get("HOST") or ""), str(db.get("PORT") or ""), str(db["NAME"]))
    name = re.sub(r"[^A-Za-z0-9._-]", "_", ident[-1])[-60:]
    return f"{name}-{hashlib.sha256(repr(ident).encode()).hexdigest()[:12]}"


class _CallIds:
    """Unique call ids without a system call each (uuid4 reads os.urandom): 64 random bits per process
    (fresh after a fork) and a counter."""

    def __init__(self):
        self._prefix = int.from_bytes(os.urandom(8), "big") << 64
        self._counter = itertools.count(1)

    def next(self) -> str:
        return str(uuid.UUID(int=self._prefix | next(self._counter)))


CALL_IDS = _CallIds()


class AuditSpool:
    """One process's spool in ``directory`` (created on first use) and its writer thread."""

    def __init__(self, directory: Path | str, *, fsync: bool = False, start_writer: bool = True):
        self.dir = Path(directory)
        self.fsync = fsync
        self.start_writer = start_writer
        self.path: Path | None = None
        self._fd: int | None = None  # O_APPEND, holds the flock
        self._rfd: int | None = None
        self._ckpt_fd: int | None = None
        self._lock = threading.Lock()  # appends, opening and rotation
        self._appended = 0  # file offset after the last complete append
        self._written = 0  # file offset up to which rows are in the database (the checkpoint)
        self._appended_total = self._written_total = 0  # the same, never reset by rotation (for flush)
        self._progress = threading.Condition()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._stop = threading.Event()
        self._idle = False  # the writer waits for rows (an append must wake it)
        self._hurry = threading.Event()  # cuts the writer's lingering short
        self._hurry_until = 0.0
        self._next_scan = 0.0
        self.rows_written = 0
        self.orphans_drained = 0

    # ------------------------------------------------------------------ calling threads

    def append(self, line: bytes) -> None:
        """Append one complete line (raises OSError if it could not be written whole; nothing is left of it)."""
        with self._lock:
            if self._fd is None:
                self._open()
            start, view = self._appended, memoryview(line)
            try:
                while view:
                    view = view[os.write(self._fd, view) :]
                if self.fsync:
                    os.fdatasync(self._fd)
            except OSError:
                with contextlib.suppress(OSError):
                    os.ftruncate(self._fd, start)  # no torn line in the middle of the file
                raise
            self._appended = start + len(line)
            self._appended_total += len(line)
        if self._idle:  # wake the writer only when it sleeps: one wake-up per batch, not per row
            self._idle = False
            self._wake.set()

    def flush(self, timeout: float) -> bool:
        """Wait until every row appended so far by this process is in the database; False at the deadline."""
        with self._lock:
            target = self._appended_total
        if self._thread is None and self._fd is not None:
            self._write_own()  # no writer thread (tests, a short-lived command): write here
        deadline = time.monotonic() + timeout
        self._hurry_until = deadline  # no lingering for more rows while someone waits
        self._hurry.set()
        self._wake.set()
        with self._progress:
            while self._written_total < target:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._progress.wait(min(remaining, 0.5))
        return True

    @property
    def pending_bytes(self) -> int:
        return self._appended_total - self._written_total

    # ------------------------------------------------------------------ files

    def _open(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        stem = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        tmp, path = self.dir / f"{stem}{TMP_SUFFIX}", self.dir / f"{stem}{SPOOL_SUFFIX}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # ours until this process ends, however it ends
            ckpt_fd = os.open(path.with_suffix(CKPT_SUFFIX), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            _ckpt_save(ckpt_fd, 0)
            os.rename(tmp, path)  # visible to other processes' scans only once locked
            rfd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        self._fd, self._rfd, self._ckpt_fd, self.path = fd, rfd, ckpt_fd, path
        self._appended = self._written = 0
        if self.start_writer:
            self._thread = threading.Thread(target=self._run, name="exchange-audit-writer", daemon=True)
            self._thread.start()

    def close(self, timeout: float = 5.0) -> bool:
        """Write what waits (up to ``timeout``) and stop the writer; True if nothing was left in the file."""
        done = self.flush(timeout) if self._fd is not None else True
        self._stopping = True
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=max(0.1, timeout))
        with self._lock:
            if done and self.path is not None:
                for p in (self.path, self.path.with_suffix(CKPT_SUFFIX)):
                    with contextlib.suppress(OSError):
                        p.unlink()
            elif self.path is not None:
                log.warning("exchange_audit_spool_left", path=str(self.path), bytes=self.pending_bytes,
                            detail="the next process with a spool on this database writes them")  # fmt: skip
            for fd in (self._rfd, self._ckpt_fd, self._fd):  # the lock goes with the last one
                if fd is not None:
                    with contextlib.suppress(OSError):
                        os.close(fd)
            self._fd = self._rfd = self._ckpt_fd = None
        return done

    def _forget_in_child(self) -> None:
        """After fork: the parent's file, lock and thread are the parent's; close our copies of the fds."""
        for fd in (self._rfd, self._ckpt_fd, self._fd):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)  # closing a copy does not release the parent's flock

    # ------------------------------------------------------------------ writer thread

    def _run(self) -> None:
        delay = 0.0
        with contextlib.suppress(Exception):  # at start: files of processes that died before us go first
            self._next_scan = time.monotonic() + ORPHAN_SCAN_SECONDS
            self.drain_orphans()
        while True:
            if delay:
                self._stop.wait(delay)  # after a failure: back off, whatever is appended meanwhile
            else:
                self._idle = True  # before looking: an append after this wakes us
                if self.pending_bytes == 0 and not self._stopping:
                    self._wake.wait(timeout=ORPHAN_SCAN_SECONDS)
                self._idle = False
                self._wake.clear()
                if not self._stopping and time.monotonic() >= self._hurry_until:
                    self._hurry.wait(LINGER_SECONDS)  # gather a batch: one INSERT for many calls
                self._hurry.clear()
            if self._stopping and self.pending_bytes == 0:
                break
            try:
                self._write_own()
                if time.monotonic() >= self._next_scan:
                    self._next_scan = time.monotonic() + ORPHAN_SCAN_SECONDS
                    self.drain_orphans()
                delay = 0.0
            except DB_UNAVAILABLE as exc:
                with contextlib.suppress(Exception):
                    connection.close()
                delay = min(RETRY_MAX, max(RETRY_FIRST, delay * 2))
                log.warning("exchange_audit_spool_waiting", error=str(exc)[:300], waiting_bytes=self.pending_bytes,
                            retry_in_s=delay)  # fmt: skip
            except Exception:  # noqa: BLE001 - the writer must outlive any one bad moment
                delay = min(RETRY_MAX, max(RETRY_FIRST, delay * 2))
                log.exception("exchange_audit_spool_error", waiting_bytes=self.pending_bytes)
            if self._stopping and delay:
                break
        with contextlib.suppress(Exception):
            connection.close()

    def _write_own(self) -> None:
        """Insert this process's lines after the checkpoint, advancing it batch by batch."""
        while True:
            with self._lock:
                end, fd = self._appended, self._rfd
            if fd is None or self._written >= end:
                break
            chunk = _complete_lines(fd, self._written, end)
            self.rows_written += insert_lines(chunk, source=str(self.path))
            self._written += len(chunk)
            _ckpt_save(self._ckpt_fd, self._written)
            with self._progress:
                self._written_total += len(chunk)
                self._progress.notify_all()
        self._rotate_if_done()

    def _rotate_if_done(self) -> None:
        with self._lock:
            if self._fd is None or self._written < ROTATE_BYTES or self._appended != self._written:
                return
            _ckpt_save(self._ckpt_fd, 0)  # first: a crash in between re-inserts (harmlessly), never skips
            os.ftruncate(self._fd, 0)
            self._appended = self._written = 0

    # ------------------------------------------------------------------ files of dead processes

    def drain_orphans(self) -> int:
        """Write and delete the spool files of processes that are gone; returns how many rows were new."""
        return drain_orphans(self.dir, skip=self.path)


def drain_orphans(directory: Path | str, *, skip: Path | None = None) -> int:
    directory = Path(directory)
    if not directory.is_dir():
        return 0
    inserted = 0
    for path in sorted(directory.glob(f"*{SPOOL_SUFFIX}")):
        if path == skip:
            continue
        inserted += _drain_file(path)
    now = time.time()
    for path in list(directory.glob(f"*{CKPT_SUFFIX}")) + list(directory.glob(f"*{TMP_SUFFIX}")):
        with contextlib.suppress(OSError):
            orphan = path.suffix == TMP_SUFFIX or not path.with_suffix(SPOOL_SUFFIX).exists()
            if orphan and now - path.stat().st_mtime > STALE_TMP_SECONDS:
                path.unlink()
    return inserted


def _drain_file(path: Path) -> int:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return 0
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                return 0  # its process is alive (or another process is draining it)
            raise
        try:
            if os.stat(path).st_ino != os.fstat(fd).st_ino:
                return 0  # drained and deleted by another process while we waited for the lock
        except FileNotFoundError:
            return 0
        ckpt_path = path.with_suffix(CKPT_SUFFIX)
        size = os.fstat(fd).st_size
        ckpt_fd = os.open(ckpt_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            offset = min(max(0, _ckpt_load(ckpt_fd)), size)
            whole = _last_newline_end(fd, offset, size)
            if whole < size:
                log.warning("exchange_audit_spool_torn_tail", path=str(path), bytes=size - whole,
                            detail="the process died while appending this row; its call had not returned")  # fmt: skip
            inserted = 0
            while offset < whole:
                chunk = _complete_lines(fd, offset, whole)
                inserted += insert_lines(chunk, source=str(path))
                offset += len(chunk)
                _ckpt_save(ckpt_fd, offset)
        finally:
            os.close(ckpt_fd)
        path.unlink()
        with contextlib.suppress(OSError):
            ckpt_path.unlink()
        log.info("exchange_audit_spool_drained", path=str(path), rows_new=inserted)
        return inserted
    finally:
        os.close(fd)


def _last_newline_end(fd: int, start: int, end: int) -> int:
    """Offset just after the last newline in [start, end) (``start`` if there is none)."""
    pos = end
    while pos > start:
        size = min(65536, pos - start)
        block = os.pread(fd, size, pos - size)
        i = block.rfind(b"\n")
        if i >= 0:
            return pos - size + i + 1
        pos -= size
    return start


def _complete_lines(fd: int, start: int, end: int) -> bytes:
    """Whole lines from ``start`` (at a line start), at most about READ_CHUNK bytes unless one line is longer."""
    data = os.pread(fd, min(READ_CHUNK, end - start), start)
    cut = data.rfind(b"\n") + 1
    if cut == 0:  # one line longer than READ_CHUNK
        data = os.pread(fd, end - start, start)
        cut = data.find(b"\n") + 1
        if cut == 0:
            raise OSError(f"spool line without its end at offset {start}")
    return data[:cut]


def _ckpt_save(fd: int | None, offset: int) -> None:
    if fd is not None:
        os.pwrite(fd, b"%020d\n" % offset, 0)


def _ckpt_load(fd: int) -> int:
    raw = os.pread(fd, 21, 0)
    try:
        return int(raw.strip() or 0)
    except ValueError:
        return 0  # unreadable: start over (inserts are idempotent)


# ---------------------------------------------------------------------- database


def insert_lines(chunk: bytes, *, source: str = "") -> int:
    """Insert the rows of whole spool lines, each at most once (by call_id); returns how many were new.

    PostgreSQL: one statement for the whole chunk (the lines joined into a JSON array, expanded by
    json_populate_recordset), so the writer does no per-row Python work. If the statement fails for any
    reason but the database being unreachable, the rows go one by one and a bad one is logged and skipped.
    """
    lines = chunk.rstrip(b"\n")
    if not lines:
        return 0
    if connection.vendor == "postgresql":
        try:
            with _statement():
                return _insert_json_array(b"[" + lines.replace(b"\n", b",") + b"]")
        except DB_UNAVAILABLE:
            raise
        except Exception as exc:  # noqa: BLE001 - fall back to row by row below
            log.warning("exchange_audit_spool_batch_refused", source=source, error=f"{type(exc).__name__}: {exc}"[:300])
    else:
        try:
            return _insert_bulk(lines.split(b"\n"))
        except DB_UNAVAILABLE:
            raise
        except Exception as exc:  # noqa: BLE001 - fall back to row by row below
            log.warning("exchange_audit_spool_batch_refused", source=source, error=f"{type(exc).__name__}: {exc}"[:300])
    inserted = 0
    for line in lines.split(b"\n"):
        try:
            inserted += _insert_one(line)
        except DB_UNAVAILABLE:
            raise
        except Exception as exc:  # noqa: BLE001 - one bad row must not hold back the others
            log.error("exchange_call_audit_failed", source=source, error=f"{type(exc).__name__}: {exc}"[:300],
                      row=line[:300].decode("utf-8", "replace"))  # fmt: skip
    return inserted


def _insert_json_array(payload: bytes) -> int:
    table = connection.ops.quote_name(ExchangeCall._meta.db_table)
    cols = ", ".join(connection.ops.quote_name(ExchangeCall._meta.get_field(c).column) for c in COLUMNS)
    sql = (f"INSERT INTO {table} ({cols}) SELECT {cols} FROM json_populate_recordset(NULL::{table}, %s::json) "
           f"ON CONFLICT (call_id) DO NOTHING")  # fmt: skip
    with connection.cursor() as cursor:
        cursor.execute(sql, [payload.decode("utf-8")])
        return max(0, cursor.rowcount)


def _row_of(line: bytes):
    fields = {c: v for c, v in json.loads(line).items() if c in COLUMNS}
    fields["call_id"] = uuid.UUID(fields["call_id"])
    fields["created_at"] = parse_datetime(fields["created_at"])
    return ExchangeCall(**fields)


def _insert_bulk(lines: list[bytes]) -> int:
    """Other databases (SQLite, one writer at a time): one transaction; rows already written are left out by
    call_id. Not ``ignore_conflicts``: SQLite's INSERT OR IGNORE would also drop a row that breaks a CHECK
    constraint without a word, where the row-by-row fallback logs it."""
    rows = {row.call_id: row for row in map(_row_of, lines)}
    with transaction.atomic():
        written = set(ExchangeCall.objects.filter(call_id__in=list(rows)).values_list("call_id", flat=True))
        fresh = [row for call_id, row in rows.items() if call_id not in written]
        ExchangeCall.objects.bulk_create(fresh)
        return len(fresh)


def _insert_one(line: bytes) -> int:
    row = _row_of(line)
    if ExchangeCall.objects.filter(call_id=row.call_id).exists():
        return 0
    with _statement():
        row.save(force_insert=True)
    return 1


def _statement():
    """A savepoint inside a caller's transaction (a failed statement must not abort it), else nothing."""
    return transaction.atomic() if connection.in_atomic_block else contextlib.nullcontext()


# ---------------------------------------------------------------------- the process's spool

_SPOOL: AuditSpool | None = None
_SPOOL_KEY: tuple | None = None
_SPOOL_LOCK = threading.Lock()


def current() -> AuditSpool | None:
    """This process's spool from the settings (None: EXCHANGE_AUDIT_SPOOL_DIR is empty, rows go inline)."""
    base = settings.EXCHANGE_AUDIT_SPOOL_DIR
    if not base:
        return None
    global _SPOOL, _SPOOL_KEY
    db = settings.DATABASES["default"]
    key = (base, settings.EXCHANGE_AUDIT_SPOOL_FSYNC, db.get("ENGINE"), db.get("HOST"), db.get("PORT"), db["NAME"])
    spool = _SPOOL
    if spool is not None and _SPOOL_KEY == key:
        return spool
    with _SPOOL_LOCK:
        if _SPOOL is None or _SPOOL_KEY != key:
            old, _SPOOL = _SPOOL, AuditSpool(Path(base) / _db_key(db), fsync=key[1])
            _SPOOL_KEY = key
            if old is not None:
                old.close()
        return _SPOOL


def drain_orphans_of_settings() -> int:
    """Write the spool files dead processes left for this database (nothing if the spool is off)."""
    if not settings.EXCHANGE_AUDIT_SPOOL_DIR:
        return 0
    spool = _SPOOL
    directory = Path(settings.EXCHANGE_AUDIT_SPOOL_DIR) / _db_key(settings.DATABASES["default"])
    return drain_orphans(directory, skip=spool.path if spool is not None else None)


def flush(timeout: float = 10.0) -> bool:
    """Wait (at most ``timeout`` seconds) until this process's audit rows are in the database."""
    spool = _SPOOL
    return True if spool is None else spool.flush(timeout)


def _at_exit() -> None:
    spool = _SPOOL
    if spool is not None:  # rows not written in time stay in the file for the next process: no long wait here
        spool.close(timeout=min(settings.DB_BACKLOG_EXIT_GRACE, EXIT_WAIT_SECONDS))


def _after_fork_in_child() -> None:
    global _SPOOL, _SPOOL_KEY, CALL_IDS
    CALL_IDS = _CallIds()
    if _SPOOL is not None:
        _SPOOL._forget_in_child()
    _SPOOL, _SPOOL_KEY = None, None


atexit.register(_at_exit)
os.register_at_fork(after_in_child=_after_fork_in_child)
