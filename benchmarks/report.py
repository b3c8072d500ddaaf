"""The report printed at the end: the tables, the ratios, and what they were measured on.

Its lines are quoted in the READMEs: change their format only on purpose.
"""

from typing import Any

from cases import INPROCESS_ARGS, SESSION_ARGS, WORKERS
from interpreter import REPO
from ratios import format_ratios


def format_main(results: dict[str, Any]) -> list[str]:
    tests = results["tests"]
    header = (
        f"{'variant':<20}{'wall s':>8}{'max RSS MiB':>13}{'overhead ms/test':>22}"
        f"{'parent faults':>15}{'child faults':>14}{'parent CPU ms':>15}{'child CPU ms':>14}"
        f"{'total CPU ms':>14}"
    )
    modules = results.get("modules", 1)
    lines = [
        f"per test, medians of {results['rounds']} rounds of {tests} tests in {modules} "
        f"file(s); CPU and faults: more than plain's (-n {WORKERS}: plain -n {WORKERS}'s)",
        header,
    ]
    plain = results["plain"]
    lines.append(f"{'plain':<20}{plain['wall_s']:>8.2f}{plain['maxrss_mib']:>13.0f}{'-':>22}")
    busy = f" -n {WORKERS}"
    labels = (
        ("mountns", "--mountns-all"),
        ("mountns session", "--mountns-all session"),
        ("mountns hermetic", "--mountns-all hermetic"),
        ("forked", "--forked"),
        ("inprocess", "inprocess"),
        ("inprocess hermetic", "inprocess hermetic"),
        ("mountns -n", f"--mountns-all{busy}"),
        ("forked -n", f"--forked{busy}"),
    )
    for name, label in labels:
        row = results["variants"].get(name)
        if row is None and name == "mountns session" and name not in results.get("skipped", {}):
            continue  # run without root only
        if row is None:
            reason = results.get("skipped", {}).get(name, "not run")
            lines.append(f"{label:<20}    skipped ({reason})")
            continue
        low, high = row["overhead_range_ms"]
        spread = f"{row['overhead_ms']:.2f} ({low:.2f}-{high:.2f})"
        sides = (  # under xdist, pytest's process is a worker: the probe sees the controller
            f"{'-':>15}{'-':>14}{'-':>15}{'-':>14}"
            if name.endswith(" -n")
            else f"{row['parent_faults']:>15.0f}{row['child_faults']:>14.0f}"
            f"{row['parent_cpu_ms']:>15.2f}{row['child_cpu_ms']:>14.2f}"
        )
        lines.append(
            f"{label:<20}{row['wall_s']:>8.2f}{row['maxrss_mib']:>13.0f}{spread:>22}"
            f"{sides}{row['total_cpu_ms']:>14.2f}"
        )
    if "inprocess" in results["variants"]:
        lines.append(f"inprocess: {' '.join(INPROCESS_ARGS)}")
    if "mountns session" in results["variants"]:
        lines.append(f"--mountns-all session: {' '.join(SESSION_ARGS)}")
    return lines


def format_floor(floor: dict[str, Any]) -> list[str]:
    unshare = "NEWUSER, id maps, NEWNS" if floor["user_namespace"] else "CLONE_NEWNS"
    labels = {
        "fork": "fork + pipe + exit + waitpid",
        "unshare": f"  + unshare({unshare})",
        "private": "  + mount / MS_REC|MS_PRIVATE",
        "floor": "  + one tmpfs = the floor",
    }
    lines = [
        f"floor, per fork, in a process that imported pytest and the plugin "
        f"(max RSS {floor['maxrss_mib']:.0f} MiB; {floor['mode']})",
        f"{'stage':<38}{'ms':>8}{'of which exit+reap':>20}{'parent faults':>15}"
        f"{'child faults':>14}",
    ]
    for stage, label in labels.items():
        row = floor["stages"][stage]
        lines.append(
            f"{label:<38}{row['total_ms']:>8.3f}{row['reap_ms']:>20.3f}"
            f"{row['self_minflt']:>15.0f}{row['children_minflt']:>14.0f}"
        )
    return lines


def format_inprocess_floor(floor: dict[str, Any]) -> list[str]:
    title = "in-process floor, per iteration, same process, with a second, idle thread"
    inprocess = floor["inprocess"]
    if "stages" not in inprocess:
        return [f"{title}: unavailable ({inprocess['unavailable']})"]
    labels = {
        "enter": "unshare(NEWNS) + / private, then back",
        "tmpfs": "  + one tmpfs",
        "floor": "  + write a byte = the floor",
    }
    lines = [
        f"{title} (bare syscalls; back: setns, fchdir)",
        f"{'stage':<38}{'ms':>8}{'of which enter':>16}{'of which back':>15}{'faults':>14}",
    ]
    for stage, label in labels.items():
        row = inprocess["stages"][stage]
        lines.append(
            f"{label:<38}{row['total_ms']:>8.3f}{row['enter_ms']:>16.3f}"
            f"{row['leave_ms']:>15.3f}{row['self_minflt']:>14.0f}"
        )
    return lines


def format_scaling(title: str, level_label: str, rows: dict[str, Any]) -> list[str]:
    lines = [
        title,
        f"{level_label:<14}{'mounts':>8}{'max RSS MiB':>13}{'plain s':>9}{'mountns s':>11}"
        f"{'overhead ms/test':>22}{'parent faults':>15}{'child faults':>14}",
    ]
    for level, row in rows.items():
        low, high = row["overhead_range_ms"]
        spread = f"{row['overhead_ms']:.2f} ({low:.2f}-{high:.2f})"
        lines.append(
            f"{level:<14}{row['mounts']:>8}{row['maxrss_mib']:>13.0f}{row['plain_wall_s']:>9.2f}"
            f"{row['wall_s']:>11.2f}{spread:>22}{row['parent_faults']:>15.0f}"
            f"{row['child_faults']:>14.0f}"
        )
    return lines


def format_report(results: dict[str, Any]) -> str:
    lines = [
        f"pytest-mountns benchmark, {results['date']}",
        f"machine: {results['machine']}",
        f"interpreter: {results['interpreter']}",
        f"pytest-mountns: {REPO} at {results['checkout']}",
        "",
        *format_main(results),
        "",
        *format_floor(results["floor"]),
        "",
        *format_inprocess_floor(results["floor"]),
        "",
        *format_ratios(results),
    ]
    if "mount_scaling" in results:
        title = "scaling with the mounts in the namespace (both inside unshare --mount)"
        lines += ["", *format_scaling(title, "extra mounts", results["mount_scaling"])]
    if "memory_scaling" in results:
        title = "scaling with pytest's memory (session fixture holding touched memory)"
        lines += ["", *format_scaling(title, "held MiB", results["memory_scaling"])]
    start, end = (
        "/".join(f"{value:.2f}" for value in results[key])
        for key in ("load_average_at_start", "load_average_at_end")
    )
    lines += ["", f"took {results['took_s']:.0f} s; load average (1/5/15 min) {start} -> {end}"]
    return "\n".join(lines)
