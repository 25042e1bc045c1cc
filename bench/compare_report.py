"""What `bench/compare.py` reports: medians, ratios, machine info, tables and charts.

Everything here works on the JSON-ready result dict that compare.py builds, so the printed
tables, the JSON file and the charts always show the same numbers.
"""

from __future__ import annotations

import datetime
import math
import os
import platform
import shutil
import statistics
import subprocess
from pathlib import Path
from typing import Any

from compare_kinds import KINDS, KINDS_BY_KEY, Sample

NOT_BUILT = "not available yet"
# A 1-minute load average above this before the run means other work shares the cores.
BUSY_LOAD = 0.5
RATIO_NOT_BUILT = "n/a (not built yet)"

# (key, label, numerator kind, denominator kind, the target from issue 6 if it sets one)
RATIOS: tuple[tuple[str, str, str, str, str], ...] = (
    ("bench_over_raw", "l2fast bench / raw ceiling", "l2fast_bench", "raw", ">= 0.8 at every MTU"),
    ("bench_over_iperf3", "l2fast bench / iperf3", "l2fast_bench", "iperf3", ">= 1.2 at MTU 65535"),
    (
        "send_over_nc",
        "l2fast send / nc",
        "l2fast_send",
        "nc",
        ">= 1.0 at MTU 1500, >= 1.5 at 9000 (issue 5)",
    ),
    ("rtt_ratio", "RTT: l2fast ping / ICMP ping", "l2fast_ping", "icmp_ping", "<= 5"),
    (
        "bench_over_raw_daemon",
        "l2fast bench / raw blast through the daemons",
        "l2fast_bench",
        "raw_daemon",
        "",
    ),
    ("raw_daemon_over_raw", "raw blast through the daemons / raw ceiling", "raw_daemon", "raw", ""),
    ("raw_over_iperf3", "raw ceiling / iperf3", "raw", "iperf3", ""),
    ("raw_over_nc", "raw ceiling / nc", "raw", "nc", ""),
)

# The targets of RATIOS in a form a program can check: ratio key -> {MTU: (op, bound)}, where
# MTU None means every MTU. A ratio at an MTU without an entry has no target there.
TARGETS: dict[str, dict[int | None, tuple[str, float]]] = {
    "bench_over_raw": {None: (">=", 0.8)},
    "bench_over_iperf3": {65535: (">=", 1.2)},
    "send_over_nc": {1500: (">=", 1.0), 9000: (">=", 1.5)},
    "rtt_ratio": {None: ("<=", 5.0)},
}
# A throughput target missed by one of these sends compare.py into its profiling pass, and
# the l2fast command to profile for it.
PROFILED_RATIOS = {
    "send_over_nc": "l2fast_send",
    "bench_over_raw": "l2fast_bench",
    "bench_over_iperf3": "l2fast_bench",
}
NOT_RUN = "not run (--only)"


def target_met(key: str, mtu: int, value: float | None) -> bool | None:
    """Whether ratio `key` meets its target at `mtu`; None when it has none there or no value."""
    targets = TARGETS.get(key, {})
    target = targets.get(mtu, targets.get(None))
    if target is None or value is None:
        return None
    op, bound = target
    return value >= bound if op == ">=" else value <= bound


def format_ratio(key: str, mtu: int, value: float) -> str:
    """`value` as "1.23x": two decimals, or as many more (up to 6) as it takes for the printed
    figure to sit on the same side of its target as the value (1.1998 is "1.1998x", not a
    "1.20x" beside NOT MET). Closer to the target than that, the sixth decimal is cut toward
    the value's side instead of rounded (1.19999996 is "1.199999x")."""
    met = target_met(key, mtu, value)
    for places in range(2, 7):
        text = f"{value:.{places}f}"
        if met is None or target_met(key, mtu, float(text)) == met:
            return text + "x"
    for cut in (math.floor, math.ceil):
        text = f"{cut(value * 1e6) / 1e6:.6f}"
        if target_met(key, mtu, float(text)) == met:
            break
    return text + "x"


def missed_targets(ratios: dict[str, dict[str, Any]]) -> list[str]:
    """Keys of the ratios of one MTU whose target was checked and not met."""
    return [key for key, entry in ratios.items() if entry.get("met") is False]


# ---- statistics


def summarize(samples: list[Sample]) -> dict[str, Any]:
    """Median, min, max and count of the samples' headline values, plus every sample."""
    values = [s.value for s in samples]
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "n": len(values),
        "samples": [{"value": s.value, **s.detail} for s in samples],
    }


def detail_median(row: dict[str, Any], name: str) -> float | None:
    """Median over a row's samples of one detail field (None when absent)."""
    values = [s[name] for s in row.get("samples", []) if s.get(name) is not None]
    return statistics.median(values) if values else None


def ratios_for(rows: dict[str, dict[str, Any]], mtu: int) -> dict[str, dict[str, Any]]:
    """Every ratio of RATIOS from one MTU's rows (ratio of medians), with its verdict.

    `met` is True or False where the ratio has a target at this MTU, else None.
    """
    out: dict[str, dict[str, Any]] = {}
    for key, label, num, den, target in RATIOS:
        a, b = rows.get(num, {}), rows.get(den, {})
        entry: dict[str, Any] = {"label": label, "numerator": num, "denominator": den}
        if target:
            entry["target"] = target
        if a.get("status") == "ok" and b.get("status") == "ok" and b["median"]:
            entry.update(status="ok", value=a["median"] / b["median"])
        elif NOT_RUN in (a.get("status"), b.get("status")):
            entry.update(status="n/a (not run)", value=None)
        else:
            entry.update(status=RATIO_NOT_BUILT, value=None)
        entry["met"] = target_met(key, mtu, entry["value"])
        out[key] = entry
    return out


def linear_fit(xs: list[float], ys: list[float]) -> dict[str, float] | None:
    """Least-squares y = intercept + slope * x, with R² (None for fewer than two points)."""
    if len(xs) < 2 or len(set(xs)) < 2:
        return None
    fit = statistics.linear_regression(xs, ys)
    mean_y = statistics.fmean(ys)
    ss_tot = sum((y - mean_y) ** 2 for y in ys)
    ss_res = sum((y - (fit.intercept + fit.slope * x)) ** 2 for x, y in zip(xs, ys, strict=True))
    return {
        "intercept": fit.intercept,
        "slope": fit.slope,
        "r2": 1 - ss_res / ss_tot if ss_tot else 1.0,
    }


# ---- machine


def _first_line(argv: list[str]) -> str:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    text = (proc.stdout or proc.stderr).strip()
    return text.splitlines()[0] if text else "unknown"


def _proc_field(path: str, name: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == name:
                    return value.strip()
    except OSError:
        pass
    return "unknown"


def _os_name() -> str:
    try:
        return platform.freedesktop_os_release().get("PRETTY_NAME", "unknown")
    except OSError:
        return "unknown"


def machine_info(command: str) -> dict[str, Any]:
    """Where and how this run happened: CPU, cores, memory, kernel, Python, tools, commit."""
    repo = Path(__file__).resolve().parent.parent
    commit = _first_line(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"])
    # The measured code is l2fast/ and csrc/: say when it differs from the commit.
    changed = _first_line(["git", "-C", str(repo), "status", "--porcelain", "l2fast", "csrc"])
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": command,
        "cpu_model": _proc_field("/proc/cpuinfo", "model name"),
        "cores": os.cpu_count(),
        "memory_gib": round(
            int(_proc_field("/proc/meminfo", "MemTotal").split()[0]) / (1 << 20), 1
        ),
        "kernel": platform.release(),
        "os": _os_name(),
        "python": platform.python_version(),
        # Before anything of ours runs: what else competes for the cores (1, 5, 15 min).
        "load_average_start": [round(x, 2) for x in os.getloadavg()],
        "l2fast_commit": commit + ("" if changed == "unknown" else " + uncommitted changes"),
        "iperf3": _first_line(["iperf3", "--version"]),
        "nc": _first_line(["dpkg-query", "-W", "-f", "${Package} ${Version}", "netcat-openbsd"]),
        "ping": _first_line([shutil.which("ping") or "ping", "-V"]),
    }


# ---- tables


def _number(value: float, unit: str) -> str:
    if unit == "us":
        return f"{value:.1f}"
    if unit == "kframes/s":
        return f"{value:,.0f}"
    return f"{value:.2f}"


def _cell(row: dict[str, Any], unit: str) -> str:
    if row.get("status") == NOT_RUN:
        return "not run"
    if row.get("status") != "ok":
        return RATIO_NOT_BUILT
    return (
        f"{_number(row['median'], unit)} ({_number(row['min'], unit)}-{_number(row['max'], unit)})"
    )


def _frames_cell(row: dict[str, Any]) -> str:
    if row.get("status") == NOT_RUN:
        return "not run"
    values = [s["frames_per_s"] / 1e3 for s in row.get("samples", [])]
    if not values:
        return RATIO_NOT_BUILT
    return (
        f"{_number(statistics.median(values), 'kframes/s')} "
        f"({_number(min(values), 'kframes/s')}-{_number(max(values), 'kframes/s')})"
    )


def measurement_table(result: dict[str, Any]) -> str:
    """Markdown table: one row per kind, one column per MTU, `median (min-max)`."""
    mtus = list(result["mtus"])
    head = ["what", "unit", *(f"MTU {m}" for m in mtus)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for kind in KINDS:
        cells = [_cell(result["mtus"][m]["rows"][kind.key], kind.unit) for m in mtus]
        lines.append(f"| {kind.label} | {kind.unit} | " + " | ".join(cells) + " |")
        if kind.key == "raw":
            cells = [_frames_cell(result["mtus"][m]["rows"]["raw"]) for m in mtus]
            lines.append("| raw-frame ceiling, frames received | k frames/s | " + " | ".join(cells))
            lines[-1] += " |"
    return "\n".join(lines)


def ratio_table(result: dict[str, Any]) -> str:
    """Markdown table of the ratios of medians, one column per MTU."""
    mtus = list(result["mtus"])
    head = ["ratio (of medians)", *(f"MTU {m}" for m in mtus), "target"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for key, label, *_rest, target in RATIOS:
        cells = []
        for m in mtus:
            entry = result["mtus"][m]["ratios"][key]
            ok = entry["status"] == "ok"
            cell = format_ratio(key, int(m), entry["value"]) if ok else entry["status"]
            verdict = {True: " met", False: " **NOT MET**", None: ""}[entry.get("met")]
            cells.append(cell + verdict)
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {target or '-'} |")
    return "\n".join(lines)


def scaling_table(scaling: dict[str, Any]) -> str:
    """Markdown table of the scaling run: time, rate and receiver peak RSS per size."""
    lines = [
        "| tool | size | time s, median (min-max) | Gbit/s | receiver peak RSS (sum of VmHWM) "
        "| receiver peak PSS |",
        "|---|---|---|---|---|---|",
    ]
    for key, entry in scaling["kinds"].items():
        label = entry.get("label") or KINDS_BY_KEY[key].label.split(",")[0]
        if entry["status"] != "ok":
            shown = "not run" if entry["status"] == NOT_RUN else RATIO_NOT_BUILT
            lines.append(f"| {label} | all | {shown} | | | |")
            continue
        for size, row in entry["sizes"].items():
            seconds = [s["seconds"] for s in row["samples"]]
            memory = [
                detail_median(row, "receiver_peak_rss_kib"),
                detail_median(row, "receiver_peak_pss_kib"),
            ]
            lines.append(
                f"| {label} | {int(size) >> 20} MiB | {statistics.median(seconds):.2f} "
                f"({min(seconds):.2f}-{max(seconds):.2f}) | {row['median']:.2f} | "
                + " | ".join(f"{m / 1024:.1f} MiB" if m is not None else "-" for m in memory)
                + " |"
            )
    for key, entry in scaling["kinds"].items():
        fit = entry.get("fit")
        if fit:
            lines.append(
                f"\n{key}: time = {fit['intercept']:.3f} s + {fit['slope'] * (1 << 30):.3f} s/GiB"
                f" x size, R^2 = {fit['r2']:.4f}"
            )
    return "\n".join(lines)


# ---- charts (matplotlib is imported only here, and only when a chart is drawn)


def comparison_chart(result: dict[str, Any], path: Path) -> None:
    """Bar chart: throughput per MTU (left) and RTT per MTU (right), min-max as error bars."""
    import matplotlib

    matplotlib.use("Agg")  # no display on a benchmark machine
    import matplotlib.pyplot as plt

    mtus = list(result["mtus"])
    panels = [
        (
            [k for k in KINDS if k.unit == "Gbit/s"],
            "throughput, Gbit/s (payload)",
            "Gbit/s",
        ),
        ([k for k in KINDS if k.unit == "us"], "round-trip time, us", "us"),
    ]
    fig, axes = plt.subplots(1, 2, figsize=(14, 5.5), gridspec_kw={"width_ratios": [3, 1.4]})
    for ax, (kinds, title, unit) in zip(axes, panels, strict=True):
        width = 0.8 / len(kinds)
        top = max(
            [
                result["mtus"][m]["rows"][k.key]["max"]
                for m in mtus
                for k in kinds
                if result["mtus"][m]["rows"][k.key]["status"] == "ok"
            ]
            or [1.0]
        )
        for i, kind in enumerate(kinds):
            xs = [j + (i - (len(kinds) - 1) / 2) * width for j in range(len(mtus))]
            rows = [result["mtus"][m]["rows"][kind.key] for m in mtus]
            ok = [r["status"] == "ok" for r in rows]
            heights = [r["median"] if good else 0.0 for r, good in zip(rows, ok, strict=True)]
            errs = [
                [r["median"] - r["min"] if good else 0 for r, good in zip(rows, ok, strict=True)],
                [r["max"] - r["median"] if good else 0 for r, good in zip(rows, ok, strict=True)],
            ]
            not_run = all(r["status"] == NOT_RUN for r in rows)
            why = " - not run" if not_run else " - not available yet"
            label = kind.label + ("" if any(ok) else why)
            bars = ax.bar(xs, heights, width, yerr=errs, capsize=3, label=label)
            for bar, row, good in zip(bars, rows, ok, strict=True):
                # Above the error bar, so the number never sits on the whisker.
                ax.annotate(
                    _number(row["median"], unit) if good else "n/a",
                    (bar.get_x() + bar.get_width() / 2, (row["max"] if good else 0) + top * 0.01),
                    ha="center",
                    va="bottom",
                    fontsize=7,
                )
        ax.set_xticks(range(len(mtus)), [f"MTU {m}" for m in mtus])
        ax.set_ylim(0, top * 1.25)
        ax.set_title(title)
        ax.set_ylabel(unit)
        ax.legend(fontsize=7, loc="upper left")
        ax.grid(axis="y", alpha=0.3)
    m = result["machine"]
    fig.suptitle(
        f"l2fast vs kernel TCP on a veth pair - medians of {result['settings']['reps']} "
        f"interleaved runs (bars: min-max)\n{m['cpu_model']}, {m['cores']} cores, "
        f"Linux {m['kernel']}, {m['date']}, load average before the run "
        f"{m['load_average_start'][0]:.2f}",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def scaling_chart(scaling: dict[str, Any], path: Path) -> None:
    """Time against file size with the fitted line (left), receiver peak RSS (right)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(12, 5))
    rss_top = 0.0
    for key, entry in scaling["kinds"].items():
        label = entry.get("label") or KINDS_BY_KEY[key].label.split(",")[0]
        if entry["status"] != "ok":
            why = "not run" if entry["status"] == NOT_RUN else "not available yet"
            ax_t.plot([], [], label=f"{label} - {why}")
            continue
        sizes = [int(s) for s in entry["sizes"]]
        gib = [s / (1 << 30) for s in sizes]
        rows = list(entry["sizes"].values())
        medians = [statistics.median(s["seconds"] for s in r["samples"]) for r in rows]
        (line,) = ax_t.plot(gib, medians, "o-", label=f"{label} (median)")
        for size, row in zip(gib, rows, strict=True):
            every = [s["seconds"] for s in row["samples"]]
            ax_t.scatter([size] * len(every), every, s=10, color=line.get_color(), alpha=0.5)
        fit = entry.get("fit")
        if fit:
            xs = [0.0, max(sizes)]
            ax_t.plot(
                [x / (1 << 30) for x in xs],
                [fit["intercept"] + fit["slope"] * x for x in xs],
                "--",
                label=f"{label} least squares, R^2 = {fit['r2']:.4f}",
            )
        rss = [detail_median(r, "receiver_peak_rss_kib") or 0 for r in rows]
        ax_m.plot(gib, [r / 1024 for r in rss], "o-", label=f"{label} receiver, peak RSS")
        rss_top = max(rss_top, *(r / 1024 for r in rss))
        pss = [detail_median(r, "receiver_peak_pss_kib") for r in rows]
        if all(p is not None for p in pss):
            ax_m.plot(
                gib, [(p or 0) / 1024 for p in pss], "s--", label=f"{label} receiver, peak PSS"
            )
    ax_t.set_xlabel("file size, GiB")
    ax_t.set_ylabel("copy time, s")
    ax_t.set_title(f"time against size (MTU {scaling['mtu']})")
    ax_t.legend(fontsize=8)
    ax_t.grid(alpha=0.3)
    ax_m.set_xlabel("file size, GiB")
    ax_m.set_ylabel("MiB (whole process tree)")
    ax_m.set_title("receiver peak resident memory")
    ax_m.set_ylim(0, rss_top * 1.3 or 1.0)
    ax_m.legend(fontsize=8)
    ax_m.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
