"""A mount namespace to mount in that can send nothing back to the machine's.

The floor and the mount helper mount; they run inside ``unshare --mount
--propagation slave``, which receives the machine's mounts (so ``/`` keeps
its propagation links, and making it private costs what it costs under
pytest) but never sends any back.
"""

import os
import sys


def prefix(for_mounting: bool) -> tuple[str, ...]:
    """The ``unshare`` command that starts a program in a throwaway namespace.

    Without root, a user namespace gives the right to mount: mapped to the
    caller's own uid (as the plugin does) for the floor, to root where the
    mount helper must mount before it runs pytest.
    """
    user: tuple[str, ...] = ()
    if os.geteuid() != 0:
        user = ("--map-root-user",) if for_mounting else ("--map-current-user",)
    return ("unshare", *user, "--mount", "--propagation", "slave", "--")


def require() -> None:
    """Exit unless this process is in a namespace of its own, not the machine's.

    Also compared with the parent's (the benchmark, which ``unshare`` left
    behind): PID 1's namespace may be unreadable even to root.
    """
    own = os.stat("/proc/self/ns/mnt").st_ino
    for pid in (1, os.getppid()):
        try:
            other = os.stat(f"/proc/{pid}/ns/mnt").st_ino
        except PermissionError:  # without root: then unshare made a user namespace, where we are
            continue
        if own == other:
            script = os.path.basename(sys.argv[0])
            sys.exit(f"{script}: refusing to run outside a throwaway mount namespace")
