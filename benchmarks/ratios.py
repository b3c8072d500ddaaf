"""The ratios the issues set budgets and goals for, each with its verdict."""

from typing import Any

from cases import WORKERS

BUDGET_VS_FORKED = 0.75
STRETCH_VS_FLOOR = 2.0
INPROCESS_BUDGET_VS_FORKED = 0.1
INPROCESS_BUDGET_VS_FLOOR = 2.0
HERMETIC_BUDGET_MS = {"mountns": 1.0, "inprocess": 0.5}
"""What --mountns-hermetic may add per test (issue 18), on this machine's mount table."""


def verdict(ratio: float, limit: float) -> str:
    return "met" if ratio <= limit else "NOT met"


def format_ratios(results: dict[str, Any]) -> list[str]:
    mountns = results["variants"]["mountns"]["overhead_ms"]
    floor = results["floor"]["stages"]["floor"]["total_ms"]
    lines = []
    forked = results["variants"].get("forked")
    if forked is not None:
        ratio = mountns / forked["overhead_ms"]
        lines.append(
            f"mountns / forked overhead = {ratio:.2f}  "
            f"(budget <= {BUDGET_VS_FORKED}: {verdict(ratio, BUDGET_VS_FORKED)})"
        )
        mine, theirs = results["variants"]["mountns"], forked
        for key, what in (("parent_cpu_ms", "parent CPU"), ("total_cpu_ms", "total CPU")):
            ratio = mine[key] / theirs[key]
            lines.append(
                f"mountns / forked {what} = {ratio:.2f}  (goal <= 1: {verdict(ratio, 1.0)})"
            )
    busy, forked_busy = (results["variants"].get(f"{n} -n") for n in ("mountns", "forked"))
    if busy is not None and forked_busy is not None:
        ratio = busy["overhead_ms"] / forked_busy["overhead_ms"]
        lines.append(
            f"mountns / forked overhead, -n {WORKERS} = {ratio:.2f}  "
            f"(budget <= {BUDGET_VS_FORKED}: {verdict(ratio, BUDGET_VS_FORKED)})"
        )
    for name, base in (("mountns hermetic", "mountns"), ("inprocess hermetic", "inprocess")):
        covered, bare = results["variants"].get(name), results["variants"].get(base)
        if covered is not None and bare is not None:
            added = covered["overhead_ms"] - bare["overhead_ms"]
            lines.append(
                f"{name}: {added:+.2f} ms per test (budget <= {HERMETIC_BUDGET_MS[base]:g}), "
                f"{results.get('writable', '?')}"
            )
    session = results["variants"].get("mountns session")
    if session is not None:
        ratio = session["overhead_ms"] / mountns
        lines.append(f"mountns, one user namespace for the session / one per test = {ratio:.2f}")
    ratio = mountns / floor
    lines.append(
        f"mountns / floor overhead  = {ratio:.2f}  "
        f"(stretch goal <= {STRETCH_VS_FLOOR:g}: {verdict(ratio, STRETCH_VS_FLOOR)})"
    )
    inprocess = results["variants"].get("inprocess")
    if inprocess is None:
        return lines
    overhead = inprocess["overhead_ms"]
    if forked is not None:
        ratio = overhead / forked["overhead_ms"]
        lines.append(
            f"inprocess / forked overhead = {ratio:.2f}  (budget <= "
            f"{INPROCESS_BUDGET_VS_FORKED:g}: {verdict(ratio, INPROCESS_BUDGET_VS_FORKED)})"
        )
    inprocess_floor = results["floor"]["inprocess"]
    if "stages" in inprocess_floor:
        ratio = overhead / inprocess_floor["stages"]["floor"]["total_ms"]
        lines.append(
            f"inprocess / inprocess floor = {ratio:.2f}  (budget <= "
            f"{INPROCESS_BUDGET_VS_FLOOR:g}: {verdict(ratio, INPROCESS_BUDGET_VS_FLOOR)})"
        )
    else:
        lines.append("inprocess / inprocess floor: no floor measured (see above)")
    return lines
