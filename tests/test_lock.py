"""The run lock: one holder per run across processes, heartbeat, stale takeover, and racing contenders."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import platform
import time
import uuid
from pathlib import Path

import pytest

from vlmlab.launch.lock import RunLock, holder, is_stale, lock_path

CTX = mp.get_context("fork")  # cheap starts; the lock module needs nothing the fork would break
RACERS = 8


def wait_for(condition, timeout: float = 10.0) -> bool:
    """Poll `condition` until it holds or `timeout` passes (generous: a loaded CI box is slow, not wrong)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


def write_lock(path: Path, host: str, pid: int, token: str, age_s: float = 0.0) -> None:
    """A lock file written by hand, as another node's sweep would leave it, with its heartbeat `age_s` old."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp")
    tmp.write_text(json.dumps({"host": host, "pid": pid, "token": token, "started": time.time() - age_s}))
    os.replace(tmp, path)  # whole or absent, so a heartbeat never reads it half written
    then = time.time() - age_s
    os.utime(path, (then, then))


def holder_ns() -> str:
    """This process's pid namespace, as a lock written here records it."""
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""


def _race(path: str, start, done, results) -> None:
    """Acquire once at the barrier, report, and hold until every racer has reported."""
    lock = RunLock(Path(path), heartbeat_s=0.2)
    start.wait()
    other = lock.acquire()
    results.put((os.getpid(), other is None, other.token if other else lock.token))
    done.wait()  # the winner keeps holding while the others try, so "exactly one" means something
    lock.release()


def race(path: Path) -> list[tuple[int, bool, str]]:
    """RACERS processes acquire `path` at the same moment; returns (pid, won, token in the file) per racer."""
    start, done, results = CTX.Barrier(RACERS), CTX.Barrier(RACERS), CTX.Queue()
    procs = [CTX.Process(target=_race, args=(str(path), start, done, results)) for _ in range(RACERS)]
    for p in procs:
        p.start()
    out = [results.get(timeout=30) for _ in procs]
    for p in procs:
        p.join(timeout=30)
        assert p.exitcode == 0
    return out


def _hold_and_die(path: str) -> None:
    """Acquire and exit without releasing: a sweep killed mid-run leaves its lock behind."""
    assert RunLock(Path(path)).acquire() is None
    os._exit(0)


def dead_lock(path: Path) -> int:
    """Leave a lock at `path` held by a process of this host that has exited; returns its pid."""
    p = CTX.Process(target=_hold_and_die, args=(str(path),))
    p.start()
    p.join(timeout=30)
    assert p.exitcode == 0 and holder(path).pid == p.pid
    return p.pid


def test_acquire_release_round_trip(tmp_path):
    path = lock_path(tmp_path / "run")
    first, second = RunLock(path), RunLock(path)
    assert first.acquire() is None
    other = second.acquire()
    assert other is not None and (other.host, other.pid, other.token) == (platform.node(), os.getpid(), first.token)
    assert not is_stale(other) and "pid" in other.describe()
    first.release()
    assert not path.exists()
    with second as other:
        assert other is None and holder(path).token == second.token
    assert not path.exists() and list(path.parent.iterdir()) == []


def test_racing_contenders_on_a_fresh_lock_one_wins(tmp_path):
    path = lock_path(tmp_path / "run")
    results = race(path)
    winners = [r for r in results if r[1]]
    assert len(winners) == 1
    assert {token for _, _, token in results} == {winners[0][2]}  # every loser saw the winner's lock
    assert not path.exists()


def test_lock_of_a_dead_process_on_this_host_is_taken_over_at_once(tmp_path):
    path = lock_path(tmp_path / "run")
    dead = dead_lock(path)
    assert is_stale(holder(path))  # its heartbeat is fresh: the dead pid alone makes it stale
    lock = RunLock(path)
    assert lock.acquire() is None
    assert holder(path).pid == os.getpid() != dead
    lock.release()
    assert list(path.parent.iterdir()) == []  # nothing left aside


def test_racing_takeover_of_a_dead_lock_one_wins(tmp_path):
    for attempt in range(2):  # the race is short: run it twice for more interleavings
        path = lock_path(tmp_path / str(attempt))
        dead = dead_lock(path)
        results = race(path)
        winners = [r for r in results if r[1]]
        assert len(winners) == 1, results
        assert {token for _, _, token in results} == {winners[0][2]}
        assert dead not in {pid for pid, _, _ in results}
        assert list(path.parent.iterdir()) == []  # the stale file was removed, nothing left aside


def test_another_hosts_lock_is_respected_until_its_heartbeat_is_stale(tmp_path):
    path = lock_path(tmp_path / "run")
    write_lock(path, "node12", 4242, "theirs", age_s=30)
    lock = RunLock(path, stale_after_s=300)
    other = lock.acquire()
    assert other is not None and (other.host, other.pid, other.token) == ("node12", 4242, "theirs")
    assert 25 < other.age_s < 60 and other.describe().startswith("host node12 pid 4242, heartbeat 3")
    write_lock(path, "node12", 4242, "theirs", age_s=400)
    assert lock.acquire() is None and holder(path).token == lock.token
    lock.release()


def test_unwritten_lock_is_held_while_fresh_and_stale_when_old(tmp_path):
    path = lock_path(tmp_path / "run")
    path.parent.mkdir()
    path.write_bytes(b"")  # a writer between O_EXCL create and write
    lock = RunLock(path)
    other = lock.acquire()
    assert other is not None and other.token == "" and "not written" in other.describe()
    old = time.time() - 60  # its writer died long ago
    os.utime(path, (old, old))
    assert lock.acquire() is None
    lock.release()


def test_takeover_spares_a_lock_that_changed_hands_since_it_was_judged(tmp_path):
    path = lock_path(tmp_path / "run")
    write_lock(path, "node12", 1, "stale", age_s=400)
    judged = holder(path)
    lock = RunLock(path)
    assert lock.is_stale(judged)
    write_lock(path, "node7", 2, "fresh", age_s=2)  # another contender took over first
    lock._take_over(judged, b"{}")  # a late contender acting on its old judgement
    assert holder(path).token == "fresh"
    assert list(path.parent.iterdir()) == [path]  # its claim is gone too


def test_a_live_claim_keeps_other_contenders_off_the_stale_lock(tmp_path):
    path = lock_path(tmp_path / "run")
    write_lock(path, "node12", 1, "stale", age_s=400)
    claim = path.with_name("run.lock.stale.next")
    write_lock(claim, "node7", 2, "taker", age_s=0.5)  # another contender is replacing it right now
    RunLock(path)._take_over(holder(path), b"{}")
    assert holder(path).token == "stale" and holder(claim).token == "taker"  # left to the claim's creator


def test_a_claim_left_by_a_contender_that_died_mid_takeover_is_cleared(tmp_path):
    path = lock_path(tmp_path / "run")
    write_lock(path, "node12", 1, "stale", age_s=400)
    write_lock(path.with_name("run.lock.stale.next"), "node7", 2, "dead", age_s=60)
    lock = RunLock(path)
    assert lock.acquire() is None
    assert holder(path).token == lock.token
    lock.release()
    assert list(path.parent.iterdir()) == []


def test_heartbeat_advances_and_a_stolen_lock_is_lost_not_deleted(tmp_path):
    path = lock_path(tmp_path / "run")
    lock = RunLock(path, heartbeat_s=0.05)
    assert lock.acquire() is None
    old = time.time() - 100
    os.utime(path, (old, old))
    assert wait_for(lambda: holder(path).age_s < 50)  # the heartbeat moved the mtime forward again
    assert not lock.lost
    thief = uuid.uuid4().hex
    write_lock(path, "node12", 4242, thief)  # judged stale elsewhere, say after a SIGSTOP
    assert wait_for(lambda: lock.lost)
    lock.release()
    assert holder(path).token == thief


@pytest.mark.parametrize("pid", [0, -1])
def test_a_corrupt_pid_is_not_a_live_process(tmp_path, pid):
    path = lock_path(tmp_path / "run")
    path.parent.mkdir()
    path.write_text(json.dumps({"host": platform.node(), "pid": pid, "token": "t", "started": 0,
                                "pid_ns": holder_ns()}))
    assert is_stale(holder(path))


def test_a_heartbeat_slower_than_the_stale_timeout_is_refused(tmp_path):
    with pytest.raises(ValueError, match="heartbeat_s"):
        RunLock(lock_path(tmp_path), heartbeat_s=60, stale_after_s=30)
