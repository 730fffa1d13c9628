"""``driver = "file"``: JSON or format lines appended to a file, rotated by size
(``maxsize``), time window (``slice``) and line count (``maxline``), rotated files
optionally gzipped (``compress``) and pruned by age (``maxage``) and count
(``maxfiles``); the keys are declared in :class:`FileSettings`, decisions are in
docs/drivers.md.

Several processes may write one file. One that rotates: each batch is written under an
exclusive ``flock`` on a lock file beside it (``.<name>.lock``, which never rotates, so
every process locks the same inode), with one ``write`` per chunk of whole lines; a
writer that finds the file rotated by another process reopens it before writing. One
that never rotates: each batch is one ``O_APPEND`` write after a ``stat``, no lock. ``{pid}`` in the
file name gives each process its own file instead.
"""

from __future__ import annotations

import fcntl
import gzip
import os
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from .._config import ConnectionConfig
from .._errors import ConfigError
from .._fields import line_encoder
from .._settings import choice, duration, flag, settings_for, size, text, whole
from .._spandata import SpanData

__all__ = ["FileDriver", "FileSettings"]

SLICES = ("", "year", "month", "day", "hour")
_SLICE_LABEL = {"year": "%Y", "month": "%Y-%m", "day": "%Y-%m-%d", "hour": "%Y-%m-%dT%H"}
_CHUNK = 1 << 20
FILE_MODE = 0o640  # trace files hold request data: not world-readable


@dataclass(frozen=True)
class FileSettings:
    """``[trace.<conn>.setting]`` of ``driver = "file"``."""

    store: str = text("", "base directory for a relative file name; created if missing", note="the working directory")
    output: str = text(
        "trace.log",
        "file name; `{pid}` is replaced by the process id, `{name}` by the connection name",
        aliases=("file", "path"),
    )
    maxsize: int = size(
        0,
        'rotate before a line would make the file larger than this (`"100MB"`, `"512KB"`, bytes); '
        "a line larger than `maxsize` gets a file of its own",
        note="off",
    )
    slice: str = choice("", SLICES, "rotate when the local-time window changes: `year`, `month`, `day`, `hour`", note="off")
    maxline: int = whole(0, "rotate after this many lines", aliases=("maxlines",), note="off")
    compress: bool = flag(
        False, "gzip rotated files (`.gz`, written to `.gz.part` and renamed, so a reader never sees half a file)"
    )
    maxage: float = duration(0, 'delete rotated files older than this (`"7d"`, `"12h"`)', note="off")
    maxfiles: int = whole(0, "keep only the newest N rotated files", note="off")
    lock: bool = flag(True, "take the inter-process lock described below (a file that rotates)")

    def validate(self, given: Mapping[str, str]) -> FileSettings:
        if not self.output:
            raise ConfigError(given.get("output", "output"), self.output, "expected a file name")
        for key in ("output", "store"):
            value = getattr(self, key)
            if any(c in value for c in "\0\r\n"):
                raise ConfigError(given.get(key, key), value, "expected a path without NUL, CR or LF characters")
        return self


def window_start(slice_: str, when: float) -> float:
    """Start (Unix seconds, local time) of the ``slice`` window containing ``when``."""
    t = time.localtime(when)
    if slice_ == "year":
        fields = (t.tm_year, 1, 1, 0)
    elif slice_ == "month":
        fields = (t.tm_year, t.tm_mon, 1, 0)
    elif slice_ == "day":
        fields = (t.tm_year, t.tm_mon, t.tm_mday, 0)
    else:
        fields = (t.tm_year, t.tm_mon, t.tm_mday, t.tm_hour)
    return time.mktime((fields[0], fields[1], fields[2], fields[3], 0, 0, 0, 0, -1))


def window_end(slice_: str, when: float) -> float:
    start = time.localtime(window_start(slice_, when))
    year, month, day, hour = start.tm_year, start.tm_mon, start.tm_mday, start.tm_hour
    if slice_ == "year":
        year += 1
    elif slice_ == "month":
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    elif slice_ == "day":
        day += 1
    else:
        hour += 1
    return time.mktime((year, month, day, hour, 0, 0, 0, 0, -1))  # mktime normalises overflow


class FileDriver:
    settings_schema = FileSettings
    overflow = "sync"  # a local destination: a full backlog is written by the thread that fills it

    def __init__(self, config: ConnectionConfig, clock: Callable[[], float] = time.time) -> None:
        settings = settings_for(config, FileSettings)
        self.max_size = settings.maxsize
        self.slice = settings.slice
        self.max_lines = settings.maxline
        self.compress = settings.compress
        self.max_age = settings.maxage
        self.max_files = settings.maxfiles
        self.lock = settings.lock
        # A file that rotates is written under the lock, its size and lines checked
        # against the disk before each batch; one that never rotates needs neither: a
        # batch is one O_APPEND write (which Linux keeps whole against other writers),
        # after a stat() that follows the file if it was moved away or deleted.
        self.rotates = bool(self.max_size or self.max_lines or self.slice)
        name = settings.output.replace("{pid}", str(os.getpid())).replace("{name}", config.name)
        path = Path(name)
        if settings.store and not path.is_absolute():
            path = Path(settings.store) / path
        self.path = path
        self._clock = clock
        self.encode: Callable[[SpanData], bytes] = line_encoder(config)  # one span's line, where it ends
        self._fd = -1
        self._lock_fd = -1
        self._ino = -1
        self._size = 0
        self._lines = 0
        self._window_end = 0.0
        # Here and not in FileSettings: validation must not touch the file system.
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(
                f"{config.path}.setting.store",
                str(self.path.parent),
                f"cannot create the directory: {exc.strerror}",
                config.source,
            ) from None
        # A path every write would fail on fails configure() instead.
        if self.path.is_dir():
            raise ConfigError(
                f"{config.path}.setting.output", str(self.path), "is a directory; expected a file path", config.source
            )
        problem = _unwritable(self.path)
        if problem:
            raise ConfigError(f"{config.path}.setting.output", str(self.path), problem, config.source)

    # -- the write path -------------------------------------------------------------
    def write(self, spans: Sequence[SpanData]) -> None:
        encode = self.encode
        self.write_encoded([encode(s) for s in spans])

    def write_encoded(self, lines: Sequence[bytes]) -> None:
        """Append the lines (each newline-terminated), rotating as configured."""
        if not self.rotates:
            if self._fd < 0:
                self._open()
            else:
                self._sync_with_disk()  # moved away or deleted: reopened, or the error counted
            self._append(b"".join(lines), len(lines))
            return
        locked = self.lock
        if locked and self._lock_fd < 0:
            lock_path = self.path.with_name(f".{self.path.name}.lock")
            self._lock_fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
        if locked:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        try:
            if self._fd < 0:
                self._open()
            self._sync_with_disk()
            if self.slice and self._clock() >= self._window_end:
                self._rotate()
            if self.max_size or self.max_lines:
                self._write_limited(lines)
            else:
                self._append(b"".join(lines), len(lines))
        finally:
            if locked:
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def _write_limited(self, lines: Sequence[bytes]) -> None:
        """Line by line, rotating before a line that would pass ``maxsize`` or
        ``maxline``, so no file ever holds a partial line."""
        buffer = bytearray()
        count = 0
        for line in lines:
            pending = self._size + len(buffer)
            size_full = self.max_size and pending + len(line) > self.max_size
            lines_full = self.max_lines and self._lines + count >= self.max_lines
            if (size_full or lines_full) and pending > 0:
                if buffer:
                    self._append(buffer, count)
                    buffer, count = bytearray(), 0
                self._rotate()
            buffer += line
            count += 1
            if len(buffer) >= _CHUNK:
                self._append(buffer, count)
                buffer, count = bytearray(), 0
        if buffer:
            self._append(buffer, count)

    def _append(self, data: bytes | bytearray, count: int) -> None:
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]
        self._size += len(data)
        self._lines += count

    # -- opening and noticing other writers ---------------------------------------------
    def _open(self) -> None:
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
        st = os.fstat(fd)
        self._fd = fd
        self._ino = st.st_ino
        self._size = st.st_size
        self._lines = self._count_lines(0, st.st_size) if self.max_lines and st.st_size else 0
        if self.slice:
            born = st.st_mtime if st.st_size else self._clock()
            self._window_end = window_end(self.slice, born)

    def _sync_with_disk(self) -> None:
        """Under the lock: follow a rotation done by another process, and account for
        lines other processes appended since our last write."""
        try:
            on_disk = os.stat(self.path)
        except FileNotFoundError:
            on_disk = None
        if on_disk is None or on_disk.st_ino != self._ino:
            self._close_fd()
            self._open()
            return
        if not self.rotates:
            return  # the size matters to rotation only
        size = os.fstat(self._fd).st_size
        if size != self._size:
            if self.max_lines:
                self._lines += self._count_lines(self._size, size)
            self._size = size

    def _count_lines(self, start: int, end: int) -> int:
        count = 0
        try:
            with open(self.path, "rb") as handle:
                handle.seek(start)
                remaining = end - start
                while remaining > 0:
                    block = handle.read(min(_CHUNK, remaining))
                    if not block:
                        break
                    count += block.count(b"\n")
                    remaining -= len(block)
        except OSError:
            return 0
        return count

    # -- rotation and retention -----------------------------------------------------------
    def _rotated_name(self, label: str) -> Path:
        stem, suffix = self.path.stem, self.path.suffix
        candidate = self.path.with_name(f"{stem}.{label}{suffix}")
        n = 1
        while candidate.exists() or Path(f"{candidate}.gz").exists():
            candidate = self.path.with_name(f"{stem}.{label}.{n}{suffix}")
            n += 1
        return candidate

    def _rotate(self) -> None:
        now = self._clock()
        if self.slice:
            # Label by the window the closed file belongs to.
            label = time.strftime(_SLICE_LABEL[self.slice], time.localtime(self._window_end - 1))
        else:
            label = time.strftime("%Y%m%dT%H%M%S", time.localtime(now)) + f"{now % 1:.6f}"[1:]
        if self._size > 0:
            target = self._rotated_name(label)
            os.rename(self.path, target)
            if self.compress:
                self._gzip(target)
        self._close_fd()
        self._open()
        if self.slice:
            self._window_end = window_end(self.slice, now)
        self._prune(now)

    @staticmethod
    def _gzip(path: Path) -> None:
        partial = path.with_name(path.name + ".gz.part")
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, FILE_MODE)
        with open(path, "rb") as src, open(fd, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb") as dst:
            shutil.copyfileobj(src, dst, _CHUNK)
        os.rename(partial, path.with_name(path.name + ".gz"))
        os.unlink(path)

    def rotated_files(self) -> list[Path]:
        """The rotated files of this output, oldest first."""
        stem, suffix = self.path.stem, self.path.suffix
        found = []
        for candidate in self.path.parent.glob(f"{stem}.*"):
            name = candidate.name
            if candidate == self.path or name.endswith(".part"):
                continue
            base = name[:-3] if name.endswith(".gz") else name
            if suffix and not base.endswith(suffix):
                continue
            found.append(candidate)
        return sorted(found, key=_mtime_then_name)

    def _prune(self, now: float) -> None:
        if not (self.max_age or self.max_files):
            return
        rotated = self.rotated_files()
        doomed: list[Path] = []
        if self.max_age:
            doomed += [p for p in rotated if _mtime(p) < now - self.max_age]
        if self.max_files and len(rotated) > self.max_files:
            doomed += rotated[: len(rotated) - self.max_files]
        for path in set(doomed):
            try:
                path.unlink()
            except FileNotFoundError:
                pass

    def _close_fd(self) -> None:
        if self._fd >= 0:
            try:
                os.close(self._fd)
            finally:
                self._fd = -1

    def close(self) -> None:
        self._close_fd()
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def _mtime_then_name(path: Path) -> tuple[float, str]:
    return (_mtime(path), path.name)


def _unwritable(path: Path) -> str:
    """Why spans could not be appended to ``path`` (``""``: they can). An absent file
    is created by the first write, so then its directory decides. Another process
    sharing the file may rotate it away between two checks: a check is tried again
    before the file is called unwritable."""
    for _ in range(3):
        if os.access(path, os.W_OK):
            return ""
        if not path.exists():
            return "" if os.access(path.parent, os.W_OK) else "its directory is not writable"
    return "the file is not writable"
