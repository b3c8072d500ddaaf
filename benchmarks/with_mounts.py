"""Mount COUNT small tmpfs on subdirectories of DIRECTORY, then become COMMAND.

For the mount scaling: pytest then starts in a namespace holding that many
more mounts, which every isolated test's namespace copies and tears down.
Run it only inside a throwaway mount namespace (it refuses otherwise)::

    unshare --mount --propagation slave -- \\
        python benchmarks/with_mounts.py COUNT DIRECTORY -- COMMAND [ARG...]
"""

import argparse
import os

import throwaway_namespace


def mount_and_exec(count: int, directory: str, command: list[str]) -> None:
    """Mount ``count`` 4 KiB tmpfs as ``DIRECTORY/m<i>``, then ``exec`` ``command``."""
    from pytest_mountns import _linux
    from pytest_mountns._linux import MountFlag

    throwaway_namespace.require()
    for index in range(count):
        target = os.path.join(directory, f"m{index}")
        os.makedirs(target, exist_ok=True)
        _linux.mount("tmpfs", target, "tmpfs", MountFlag.NOSUID | MountFlag.NODEV, "size=4k")
    os.execvp(command[0], command)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("count", type=int, help="how many tmpfs to mount")
    parser.add_argument("directory", help="where: its subdirectories m0, m1, ...")
    parser.add_argument("command", nargs="+", help="what to run then, after --")
    args = parser.parse_args()
    mount_and_exec(args.count, args.directory, args.command)


if __name__ == "__main__":
    main()
