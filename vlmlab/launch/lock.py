"""One run, one trainer: a lock file per run with its holder, a heartbeat, and a safe takeover when stale.

Two sweeps of one ablation may start together, on one machine or on nodes sharing an NFS/Lustre
filesystem. A run being trained holds `<run_dir>/run.lock`, a small JSON file naming its holder (host,
pid, a token unique to this acquisition, start time); a sweep that finds a live lock skips the run.
Only operations that are atomic on a shared filesystem are used: `os.open(O_CREAT | O_EXCL)`,
`os.replace`, `os.utime` and reading files (no fcntl/flock, which NFS honours unevenly; O_EXCL needs NFSv3+).

Heartbeat. The holder touches the file's mtime every `heartbeat_s` and, at each beat, checks that the
file still holds its token; if not, someone judged it stale and took over, so it sets `lost` and stops
beating (the caller aborts the run). The holder is, by definition, whoever's token is in the file.

Stale. A lock is stale when its mtime is older than `stale_after_s`; when its host and pid namespace are
ours and its pid is dead (taken over at once, no timeout); or when it is unparseable and older than
`UNWRITTEN_GRACE_S` (its writer died between create and write; a fresh unparseable one is being written).
The mtime is set by the file server and compared with this machine's clock, so `stale_after_s` must
exceed any clock skew between nodes and any filesystem stall a live holder may go through (default 5 min),
and clocks must agree within `UNWRITTEN_GRACE_S` (NTP keeps them within milliseconds).

Takeover, and why exactly one contender wins. A lock is created either with O_EXCL (one winner per
creation) or by a takeover: to replace a stale lock of token T, a contender creates the claim
`run.lock.<T>.next` (its own lock content) with O_EXCL, re-reads the lock and, only if it still holds T and
is still stale, renames its claim over it with `os.replace` (so there is no moment without a lock). Only
the claim's creator replaces, only T, and T never comes back once replaced: a contender that judged T stale
too either fails to create the claim or creates it later and finds the lock no longer holds T, and backs
off. A claim older than `UNWRITTEN_GRACE_S` (or of a dead pid here) belongs to a contender that died
mid-takeover; removing it is safe, since a claim acts only through its creator's rename, which then fails.
Whoever's token is in the file holds the lock, so every contender re-reads it before it trains. What these
primitives cannot exclude is a stale holder waking up (SIGSTOP, a stalled filesystem) mid-takeover: it
learns at its next beat that the file no longer holds its token, sets `lost`, and the caller stops.
"""

from __future__ import annotations

import json
import os
import platform
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

HEARTBEAT_S = 30.0
STALE_AFTER_S = 300.0  # must exceed the clock skew between nodes and any filesystem stall
UNWRITTEN_GRACE_S = 10.0  # an unparseable lock or a claim older than this lost its writer
_SETTLE_S = 3 * UNWRITTEN_GRACE_S  # acquire gives up if the lock keeps changing hands this long (a bug, not load)
_WAIT_WRITTEN_S = 0.5  # how long to wait for a fresh lock's content, to name its holder


def _pid_namespace() -> str:
    # Containers may share a host name but not a pid space: a pid is only checked where it means the same.
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""


_HOST, _PID_NS = platform.node(), _pid_namespace()


def lock_path(run_dir: Path) -> Path:
    """The lock file of a run directory."""
    return run_dir / "run.lock"


@dataclass(frozen=True)
class Holder:
    """Who holds a lock: host, pid, per-acquisition token, start time, and heartbeat age when inspected."""

    host: str
    pid: int
    token: str  # empty for a lock file that is not written yet (or whose writer died)
    started: float
    age_s: float = 0.0  # seconds since the last heartbeat (the file's mtime) when read
    pid_ns: str = ""

    def describe(self) -> str:
        """'host node12 pid 4242, heartbeat 8 s ago'."""
        if not self.token:
            return f"a lock not written yet, created {self.age_s:.0f} s ago"
        return f"host {self.host} pid {self.pid}, heartbeat {self.age_s:.0f} s ago"


def holder(path: Path) -> Holder | None:
    """Who holds the lock at `path` now (without acquiring it), or None when there is no lock file."""
    try:
        with open(path, "rb") as f:
            mtime = os.fstat(f.fileno()).st_mtime  # the age and the content of one and the same file
            raw = f.read()
    except FileNotFoundError:
        return None
    age = max(0.0, time.time() - mtime)  # a node whose clock runs behind the server's reads a future mtime
    try:
        data = json.loads(raw)
        return Holder(str(data["host"]), int(data["pid"]), str(data["token"]), float(data["started"]), age,
                      str(data.get("pid_ns", "")))
    except (ValueError, KeyError, TypeError, AttributeError):
        return Holder("", 0, "", mtime, age)


def is_stale(h: Holder, stale_after_s: float = STALE_AFTER_S) -> bool:
    """Whether a lock may be taken over: no heartbeat for `stale_after_s`, a dead pid here, or never written."""
    if not h.token:
        return h.age_s > min(UNWRITTEN_GRACE_S, stale_after_s)
    if h.age_s > stale_after_s:
        return True
    return h.host == _HOST and h.pid_ns == _PID_NS and not _pid_alive(h.pid)


def _pid_alive(pid: int) -> bool:
    if pid <= 0:  # kill(0) and kill(-1) address process groups: a corrupt pid is no live process
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


def _create(path: Path, content: bytes) -> bool:
    """Create `path` with `content` unless it exists; True for the one process that created it."""
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "wb") as f:
        f.write(content)
    return True


class RunLock:
    """An exclusive, heartbeated lock on one run; `with RunLock(p) as other:` gives None when held by us."""

    def __init__(self, path: Path, heartbeat_s: float = HEARTBEAT_S, stale_after_s: float = STALE_AFTER_S) -> None:
        if not 0 < heartbeat_s < stale_after_s:  # a live holder would look stale between its own beats
            raise ValueError(f"RunLock needs 0 < heartbeat_s ({heartbeat_s}) < stale_after_s ({stale_after_s})")
        self.path = Path(path)
        self.heartbeat_s, self.stale_after_s = heartbeat_s, stale_after_s
        self._me: Holder | None = None
        self._stop, self._lost = threading.Event(), threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def lost(self) -> bool:
        """Whether another process took the lock over while we held it (the run must stop)."""
        return self._lost.is_set()

    @property
    def token(self) -> str | None:
        """This acquisition's token, None before the first acquire."""
        return self._me.token if self._me else None

    def is_stale(self, h: Holder) -> bool:
        """Whether `h` may be taken over, with this lock's `stale_after_s`."""
        return is_stale(h, self.stale_after_s)

    def acquire(self) -> Holder | None:
        """Take the lock: None when this process now holds it, else the live holder found."""
        if self._thread is not None:
            raise RuntimeError(f"{self.path}: already held by this RunLock")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._me = Holder(_HOST, os.getpid(), uuid.uuid4().hex, time.time(), 0.0, _PID_NS)
        content = json.dumps({k: v for k, v in asdict(self._me).items() if k != "age_s"}).encode()
        start = time.monotonic()
        while time.monotonic() - start < _SETTLE_S:
            _create(self.path, content)
            seen = holder(self.path)  # whoever's token is in the file holds the lock, whoever created it
            if seen is None:
                continue  # released between our attempt and our read
            if seen.token == self._me.token:
                self._start_heartbeat()
                return None
            if not self.is_stale(seen):
                if seen.token or time.monotonic() - start > _WAIT_WRITTEN_S:
                    return seen
                time.sleep(0.02)  # its creator is writing it: wait a moment so the caller can name the holder
                continue
            self._take_over(seen, content)
        raise RuntimeError(f"{self.path}: the lock did not settle in {_SETTLE_S:.0f} s")

    def _take_over(self, judged: Holder, content: bytes) -> None:
        """Replace the stale lock of `judged` by ours, unless another contender is at it or got there first."""
        name = "".join(c for c in judged.token if c.isalnum())[:64] or "unwritten"  # a token from a file: sanitise
        claim = self.path.with_name(f"{self.path.name}.{name}.next")
        if not _create(claim, content):
            other = holder(claim)
            if other is not None and (other.age_s > UNWRITTEN_GRACE_S or self.is_stale(other)):
                claim.unlink(missing_ok=True)  # its contender died mid-takeover; a live one would just retry
            else:
                time.sleep(0.02)  # a live contender is at it: its lock shows up in a moment
            return
        try:
            current = holder(self.path)
            if current is not None and current.token == judged.token and self.is_stale(current):
                os.replace(claim, self.path)
        except FileNotFoundError:
            pass  # our claim was judged dead and removed while we were stopped: the next pass decides
        finally:
            claim.unlink(missing_ok=True)  # gone already when it became the lock

    def release(self) -> None:
        """Stop the heartbeat and remove the lock file if it still holds our token."""
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join()
        self._thread = None
        current = holder(self.path)
        if current is not None and current.token == self.token:
            # A takeover between the read and the unlink needs us stale, and we were beating until just now.
            self.path.unlink(missing_ok=True)

    def _start_heartbeat(self) -> None:
        self._stop.clear()
        self._lost.clear()
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat {self.path}", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            try:
                current = holder(self.path)
                if current is None or current.token != self.token:
                    self._lost.set()  # taken over: beating on would refresh the new holder's lock
                    return
                os.utime(self.path)
            except OSError:
                continue  # a stalled filesystem: if it lasts, others take over and the next read says so

    def __enter__(self) -> Holder | None:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
