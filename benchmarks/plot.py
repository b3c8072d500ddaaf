"""The results drawn (``--plot``), where the interpreter running the benchmark has matplotlib."""

import importlib
import sys
from typing import Any


def plot(results: dict[str, Any], path: str) -> None:
    """Three panels: overhead per test; against the mounts; against pytest's RSS."""
    try:  # by name: matplotlib is optional, and typed only where it is installed
        importlib.import_module("matplotlib").use("Agg")
        plt = importlib.import_module("matplotlib.pyplot")
    except ImportError:
        print(f"note: matplotlib is not importable; no plot written to {path}", file=sys.stderr)
        return
    figure, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    names = ["floor"]
    heights = [results["floor"]["stages"]["floor"]["total_ms"]]
    colors = ["grey"]
    if "stages" in results["floor"]["inprocess"]:
        names.append("in-process\nfloor")
        heights.append(results["floor"]["inprocess"]["stages"]["floor"]["total_ms"])
        colors.append("lightgrey")
    errors = [[0.0] * len(names), [0.0] * len(names)]
    palette = {"mountns": "tab:blue", "forked": "tab:orange", "inprocess": "tab:green"}
    for name, row in results["variants"].items():
        names.append(name)
        heights.append(row["overhead_ms"])
        colors.append(palette.get(name, "tab:purple"))
        errors[0].append(row["overhead_ms"] - row["overhead_range_ms"][0])
        errors[1].append(row["overhead_range_ms"][1] - row["overhead_ms"])
    axes[0].bar(names, heights, yerr=errors, capsize=4, color=colors)
    axes[0].set(title=f"overhead per test ({results['tests']} tests)", ylabel="ms / test")
    for axis, key, label in (
        (axes[1], "mount_scaling", "extra mounts in the namespace"),
        (axes[2], "memory_scaling", "pytest max RSS (MiB)"),
    ):
        rows = results.get(key)
        if not rows:
            axis.set_axis_off()
            continue
        if key == "mount_scaling":
            xs = [float(level) for level in rows]
        else:
            xs = [row["maxrss_mib"] for row in rows.values()]
        ys = [row["overhead_ms"] for row in rows.values()]
        spread = [
            [y - row["overhead_range_ms"][0] for y, row in zip(ys, rows.values(), strict=True)],
            [row["overhead_range_ms"][1] - y for y, row in zip(ys, rows.values(), strict=True)],
        ]
        axis.errorbar(xs, ys, yerr=spread, fmt="o-", capsize=4, color="tab:blue")
        axis.set(title="--mountns-all overhead", xlabel=label, ylabel="ms / test")
        axis.set_ylim(bottom=0)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    print(f"plot written to {path}", file=sys.stderr)
