"""Who holds an outbox lease, and freeing the leases of a dispatcher that is gone.

A lease owner is ``host:pid:random:pid-namespace``. A dispatcher killed with SIGKILL (or by
the OOM killer) leaves its leased rows pending until their lease runs out; one restarted on
the same host frees them at start, when it can prove the holder is gone: same host name,
same PID namespace, and no process with that pid. Anything it cannot prove (another host,
another container, a pid reused since) waits for the lease as before.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid

from stores.base import CandidateStore

log = logging.getLogger(__name__)


def default_owner() -> str:
    """``host:pid:random:pid-namespace``: who holds a lease, and enough to tell, on the same
    host, whether that process is still alive."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}:{_pid_namespace()}"


def _pid_namespace() -> str:
    """The inode of this process's PID namespace: two containers may share a host name, never
    a namespace, so a pid is only read as "gone" inside the namespace it was taken in."""
    try:
        return str(os.stat("/proc/self/ns/pid").st_ino)
    except OSError:
        return ""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def reclaim_orphaned_leases(store: CandidateStore, now: str) -> int:
    """Frees the rows leased by dispatchers of this host (and PID namespace) whose process
    is gone (killed with SIGKILL, OOM): they would otherwise wait out their lease. A pid
    reused since reads as alive, so the rows wait as before; never the other way round.
    Returns the rows freed."""
    namespace = _pid_namespace()
    if not namespace:
        return 0
    prefix = f"{socket.gethostname()}:"
    freed = 0
    for owner, keys in store.outbox_leases(prefix, now).items():
        host_pid_rand_ns = owner.split(":")
        if len(host_pid_rand_ns) != 4 or host_pid_rand_ns[3] != namespace:
            continue
        pid = host_pid_rand_ns[1]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            freed += store.release_outbox(owner, keys)
            log.warning(
                "freed %d outbox rows leased by %s, a dispatcher that is gone", len(keys), owner
            )
    return freed
