"""The rounds' samples reduced to the figures the report prints and the JSON holds.

Medians over the rounds; a variant's figures are per test, above plain
pytest's in the same round, so that a round's drift cancels.
"""

import statistics
from collections.abc import Sequence
from typing import Any

from runner import Sample


def per_test(values: Sequence[float], tests: int, scale: float = 1.0) -> float:
    return statistics.median(values) / tests * scale


def overheads_ms(variant: list[Sample], plain: list[Sample], tests: int) -> list[float]:
    """(variant - plain) / N in ms, pairing the runs of each round."""
    return [(v.wall_s - p.wall_s) / tests * 1000 for v, p in zip(variant, plain, strict=True)]


def summarize_variant(variant: list[Sample], plain: list[Sample], tests: int) -> dict[str, Any]:
    overhead = overheads_ms(variant, plain, tests)

    def paired(key: str) -> list[float]:
        return [v.probe[key] - p.probe[key] for v, p in zip(variant, plain, strict=True)]

    return {
        "wall_s": statistics.median(s.wall_s for s in variant),
        "overhead_ms": statistics.median(overhead),
        "overhead_range_ms": [min(overhead), max(overhead)],
        "parent_faults": per_test(paired("self_minflt"), tests),
        "child_faults": per_test([s.probe["children_minflt"] for s in variant], tests),
        "parent_cpu_ms": per_test(paired("self_cpu_s"), tests, 1000),
        "child_cpu_ms": per_test([s.probe["children_cpu_s"] for s in variant], tests, 1000),
        "total_cpu_ms": per_test(
            [v.tree_cpu_s - p.tree_cpu_s for v, p in zip(variant, plain, strict=True)], tests, 1000
        ),
        "maxrss_mib": statistics.median(s.probe["maxrss_kib"] for s in variant) / 1024,
        "mounts": variant[0].probe["mounts"],
    }


def summarize_plain(plain: list[Sample]) -> dict[str, float]:
    return {
        "wall_s": statistics.median(s.wall_s for s in plain),
        "maxrss_mib": statistics.median(s.probe["maxrss_kib"] for s in plain) / 1024,
    }


def median_stages(samples: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Medians over the rounds of each stage's figures (``samples``: one ``stages`` per round)."""
    return {
        stage: {key: statistics.median(s[stage][key] for s in samples) for key in keys}
        for stage, keys in samples[0].items()
    }


def summarize_floor(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over the rounds of each stage's per-fork, and per in-process, figures."""
    inprocess = [s["inprocess"] for s in samples]
    summary = {
        "mode": samples[0]["mode"],
        "user_namespace": samples[0]["user_namespace"],
        "maxrss_mib": statistics.median(s["maxrss_kib"] for s in samples) / 1024,
        "stages": median_stages([s["stages"] for s in samples]),
    }
    if all("stages" in s for s in inprocess):
        summary["inprocess"] = {"stages": median_stages([s["stages"] for s in inprocess])}
    else:
        reason = next(s["unavailable"] for s in inprocess if "stages" not in s)
        summary["inprocess"] = {"unavailable": reason}
    return summary


def summarize_scaling(
    samples: dict[str, list[Sample]], levels: Sequence[int], tests: int
) -> dict[str, Any]:
    return {
        str(level): {
            "plain_wall_s": statistics.median(s.wall_s for s in samples[f"plain@{level}"]),
            **summarize_variant(samples[f"mountns@{level}"], samples[f"plain@{level}"], tests),
        }
        for level in levels
    }
