"""The doctor, `python -m pytest_mountns`: what this machine allows, and what to change."""

from __future__ import annotations

import os
import platform
import sys

from . import __version__, _linux, _mountinfo, _probe, _session


def report() -> str:
    lines = [f"pytest-mountns {__version__} doctor"]
    if not sys.platform.startswith("linux"):
        lines.append(f"  platform: {sys.platform}: mount namespaces need Linux; tests are skipped")
        return "\n".join(lines)
    uname = platform.uname()
    lines.append(f"  kernel: {uname.system} {uname.release} {uname.machine}")
    try:
        privileged = _linux.has_cap_sys_admin()
        namespace = _linux.mount_namespace_id()
    except OSError as error:
        lines.append(f"  /proc: not usable ({error.strerror}); mount /proc")
        return "\n".join(lines)
    lines.append(
        f"  you: uid {os.getuid()}, gid {os.getgid()}; "
        f"CAP_SYS_ADMIN: {'yes' if privileged else 'no'}"
    )
    for knob, value in _probe.read_knobs().items():
        lines.append(f"  {knob}: {'(not present)' if value is None else value}")
    lines.append(f"  propagation of /: {_mountinfo.root_propagation()}")
    lines.append("  ways to a mount namespace:")
    for user_namespace, label in ((False, "plain (root)"), (True, "user namespace")):
        failure = _probe.try_namespace(namespace, user_namespace)
        if failure is None:
            outcome = "works"
        else:
            knobs = _probe.read_knobs()
            outcome = _probe.diagnose(failure, user_namespace, privileged, "auto", knobs)
        lines.append(f"    {label}: {outcome}")
    lines.append("  what pytest would use:")
    for mode in ("auto", "always", "never"):
        availability = _probe.probe(mode)
        verdict = availability.how if availability.available else f"skip: {availability.how}"
        lines.append(
            f"    --mountns-userns={mode}{' (default)' if mode == 'auto' else ''}: {verdict}"
        )
    session = None if privileged else (_session.why_not() or None)
    if privileged:
        outcome = "nothing to enter as root: a plain mount namespace per test"
    elif session is None:
        outcome = _probe.describe(False, in_session=True)
    else:
        outcome = f"a user namespace per test, as one for the session fails: {session}"
    lines.append(f"    --mountns-userns=session: {outcome}")
    reason = _session.why_in_process_forks()
    if reason is not None:
        inprocess = f"forks: {reason}"
    elif privileged:
        inprocess = "works"
    else:
        inprocess = "works, in one user namespace for the session (auto enters it)"
    lines.append(f"    --mountns-mode=inprocess: {inprocess}")
    return "\n".join(lines)


if __name__ == "__main__":
    print(report())
