"""The dev state directory: what `lq dev` keeps across runs and records while it runs.

Where: `--state-dir`, else `$LQ_DEV_STATE`, else `$XDG_STATE_HOME/lq/dev`, else
`~/.local/state/lq/dev`. The directory is mode 0700 (one that others can read is
refused) and every file in it 0600, written whole (a temporary file renamed over it):

    secret         the HS256 secret of lq dev's tokens: made once, kept across runs
    cluster.json   the running cluster: lq dev's pid, start time, gateway URLs, Redis
                   URL, the embedded Redis's directory, each process's name and pid
    lock           locked (flock) by the running lq dev for its whole life
    lq-redis-*/    the embedded Redis's files while it runs

Invariant: only the process holding `lock` writes here, so one state directory serves
one `lq dev` at a time. The kernel drops the lock when that process ends, however it
ends, so a `cluster.json` whose lock is free is stale: readers ignore it, and the next
`lq dev` removes it together with any `lq-redis-*` directory (a SIGKILLed lq dev cannot
remove its Redis's files; its children die with it, see `lq._orphan_guard`).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import shutil
import stat
import tempfile
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

from lq.embedded import DIR_PREFIX

__all__ = [
    "STATE_ENV", "Cluster", "DevStateError", "Owner", "find_running", "state_dir",
    "stored_secret",
]

STATE_ENV = "LQ_DEV_STATE"
_SECRET, _CLUSTER, _LOCK = "secret", "cluster.json", "lock"


class DevStateError(Exception):
    """The state directory cannot be used (the message says why and what to do)."""


def state_dir(flag: str | None, env: Mapping[str, str]) -> Path:
    """The state directory: the flag, `$LQ_DEV_STATE`, `$XDG_STATE_HOME/lq/dev` or
    `~/.local/state/lq/dev`, in that order."""
    if flag:
        return Path(flag).expanduser()
    if env.get(STATE_ENV):
        return Path(env[STATE_ENV]).expanduser()
    xdg = env.get("XDG_STATE_HOME", "")
    if os.path.isabs(xdg):  # the XDG spec: a relative value is invalid and ignored
        return Path(xdg) / "lq" / "dev"
    return Path(env.get("HOME") or Path.home()) / ".local" / "state" / "lq" / "dev"


@dataclass(frozen=True, slots=True)
class Cluster:
    """A running `lq dev` as it records itself in `cluster.json`."""

    pid: int
    started_at: float  # seconds since the epoch
    state: str  # "starting" until every process is ready, then "ready"
    gateway_urls: list[str]
    redis_url: str  # as given (it may hold a password: the file is 0600)
    redis_dir: str | None  # the embedded Redis's files, None for --redis-url
    secret_from: str  # "state" (the `secret` file) or "LQ_JWT_SECRET"
    processes: dict[str, int] = field(default_factory=dict)  # name -> pid

    @classmethod
    def parse(cls, text: str) -> Cluster | None:
        try:
            data = json.loads(text)
            return cls(
                pid=int(data["pid"]), started_at=float(data["started_at"]),
                state=str(data["state"]),
                gateway_urls=[str(u) for u in data["gateway_urls"]],
                redis_url=str(data["redis_url"]),
                redis_dir=None if data["redis_dir"] is None else str(data["redis_dir"]),
                secret_from=str(data["secret_from"]),
                processes={str(k): int(v) for k, v in data["processes"].items()},
            )
        except (ValueError, KeyError, TypeError, AttributeError):
            return None


def _write(path: Path, text: str) -> None:
    """`text` into `path` (mode 0600), whole or not at all."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # mode 0600
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _locked_by_another(path: Path) -> bool:
    """True while some process holds the lock (a running lq dev)."""
    try:
        fd = os.open(path / _LOCK, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # also drops the shared lock, if it was taken
    return False


def find_running(path: Path) -> Cluster | None:
    """The cluster recorded in `path` if its lq dev is still running, else None."""
    try:
        text = (path / _CLUSTER).read_text()
    except OSError:
        return None
    if not _locked_by_another(path):
        return None
    return Cluster.parse(text)


def stored_secret(path: Path) -> str | None:
    """The secret lq dev keeps in `path`, if it has made one."""
    try:
        return (path / _SECRET).read_text().strip() or None
    except OSError:
        return None


class Owner:
    """The running lq dev's hold on its state directory (see the module's invariant)."""

    def __init__(self, path: Path, lock_fd: int) -> None:
        self.path = path
        self._lock_fd = lock_fd

    @classmethod
    def acquire(cls, path: Path) -> Owner:
        """Create `path` if needed (0700), refuse one others can read, take the lock."""
        try:
            path.mkdir(mode=0o700, parents=True, exist_ok=True)
            info = path.stat()
        except OSError as e:
            raise DevStateError(f"cannot create the state directory {path}: {e.strerror}; "
                                "choose another with --state-dir") from e
        if info.st_uid != os.getuid() or stat.S_IMODE(info.st_mode) & 0o077:
            raise DevStateError(
                f"the state directory {path} must belong to you and be readable by you only "
                f"(mode {stat.S_IMODE(info.st_mode):o}): chmod 700 it or choose another "
                "with --state-dir")
        try:
            fd = os.open(path / _LOCK, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as e:
            raise DevStateError(f"cannot open {path / _LOCK}: {e.strerror}") from e
        # a reader (lq status) holds a shared lock for a moment: try for a little while
        for _ in range(25):
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return cls(path, fd)
            except BlockingIOError:
                time.sleep(0.02)
            except OSError as e:  # a file system without locks
                os.close(fd)
                raise DevStateError(f"cannot lock {path / _LOCK}: {e.strerror}; choose "
                                    "another state directory with --state-dir") from e
        os.close(fd)
        other = find_running(path)
        who = f" (pid {other.pid}, {', '.join(other.gateway_urls)})" if other else ""
        raise DevStateError(f"another lq dev{who} is running with the state directory {path}: "
                            "stop it, or give this one another --state-dir")

    def sweep(self) -> list[Path]:
        """Remove what an lq dev that did not stop cleanly left; the directories removed."""
        (self.path / _CLUSTER).unlink(missing_ok=True)
        removed = []
        for stale in sorted(self.path.glob(DIR_PREFIX + "*")):
            if stale.is_dir() and not stale.is_symlink():
                shutil.rmtree(stale, ignore_errors=True)
                removed.append(stale)
        return removed

    def secret(self) -> str:
        """The kept secret, made (64 hex digits) when there is none yet."""
        kept = stored_secret(self.path)
        if kept is None or len(kept.encode()) < 32:
            kept = secrets.token_hex(32)
            _write(self.path / _SECRET, kept + "\n")
        return kept

    def record(self, cluster: Cluster) -> None:
        _write(self.path / _CLUSTER, json.dumps(asdict(cluster), indent=2) + "\n")

    def release(self) -> None:
        """Forget the running cluster and let the next lq dev in (the lock file stays:
        removing it would let two processes lock two different files)."""
        (self.path / _CLUSTER).unlink(missing_ok=True)
        os.close(self._lock_fd)
