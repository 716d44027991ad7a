"""The printed table and the PNG chart of the latency distributions."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any


def fmt(value: Any) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "n/a"
        return f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"
    return "n/a" if value is None else str(value)


def _row(cells: list[Any], widths: list[int]) -> str:
    return "  ".join(
        str(cell).rjust(width) if i else str(cell).ljust(width) for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
    )


def _ratio(relay: float | None, direct: float | None) -> str:
    if not relay or not direct:
        return "n/a"
    return f"{relay / direct:.2f}x"


def table(document: dict[str, Any]) -> str:
    r = document["results"]
    lines = [f"relay benchmark ({document['mode']}), {document['machine']['cpus_usable']} CPUs, {document['machine']['cpu_model']}", ""]
    widths = [34, 9, 9, 9, 8]
    lines.append(_row(["latency (ms)", "direct", "relay", "added", "ratio"], widths))
    for key in ("c1", "c16", "c64"):
        lat = r["latency"][key]
        for pct in ("p50", "p95", "p99"):
            d, b = lat["direct"].get(pct), lat["relay"].get(pct)
            lines.append(
                _row([f"non-streamed c={lat['concurrency']} {pct}", fmt(d), fmt(b), fmt(lat["added"].get(pct)), _ratio(b, d)], widths)
            )
    s = r["streaming"]
    for label, title in (("first_byte", "streamed first byte"), ("first_content", "streamed first content")):
        for pct in ("p50", "p99"):
            d, b = s[label]["direct"].get(pct), s[label]["relay"].get(pct)
            lines.append(_row([f"{title} c=1 {pct}", fmt(d), fmt(b), fmt(s[f"added_{label}"].get(pct)), _ratio(b, d)], widths))
    g = r["chunk_gaps"]
    for pct in ("p50", "p95", "max"):
        d, b = g["direct"].get(pct), g["relay"].get(pct)
        added = None if d is None or b is None else round(b - d, 4)
        lines.append(_row([f"gap between chunks ({g['chunk_delay_ms']} ms) {pct}", fmt(d), fmt(b), fmt(added), _ratio(b, d)], widths))
    ctl = r["controls"]
    for key in ("c1", "c16"):
        for pct in ("p50", "p99"):
            off, on, added = ctl[key]["direct"].get(pct), ctl[key]["relay"].get(pct), ctl[key]["added"].get(pct)
            lines.append(_row([f"controls off|on c={key[1:]} {pct}", fmt(off), fmt(on), fmt(added), _ratio(on, off)], widths))
    lines.append(
        f"  table requests with both controls on: {ctl['table_requests']} over {ctl['relayed_requests']} requests"
        f" ({fmt(ctl['table_requests_per_1000'])} per 1,000; block list of {ctl['blocklist_rows']} rows)"
    )
    lines.append("")
    lines.append(_row(["throughput (req/s), CPU", "direct", "relay", "", "ratio"], widths))
    for key in ("c1", "c16", "c64"):
        t = r["throughput"][key]
        lines.append(_row([f"requests/s c={key[1:]}", fmt(t["direct"]), fmt(t["relay"]), "", _ratio(t["relay"], t["direct"])], widths))
    for key in ("c1", "c16", "c64"):
        c = r["cpu"][key]
        lines.append(
            _row(
                [
                    f"CPU ms/request c={key[1:]} (emulator|relay)",
                    fmt(c["emulator_ms_per_direct_request"]),
                    fmt(c["relay_ms_per_relayed_request"]),
                    "",
                    "",
                ],
                widths,
            )
        )
    lines.append(
        _row(
            [
                "relay-only soak c=16 req/s | relay CPU ms/req",
                fmt(r["throughput"]["soak_c16_relay_only_rps"]),
                fmt(r["cpu"]["soak_relay_ms_per_request"]),
                "",
                "",
            ],
            widths,
        )
    )
    lines.append("")
    m, i, cs, imp = r["memory"], r["identity"], r["cold_start"], r["import"]
    lines.append(
        f"MI token requests: {i['token_requests']} over {i['relayed_requests']} relayed requests"
        f" ({fmt(i['token_requests_per_1000'])} per 1,000)"
    )
    lines.append(
        f"relay RSS: {fmt(m['rss_before_mb'])} MB after warm-up, {fmt(m['rss_after_mb'])} MB after a {m['requests']}-request soak,"
        f" peak {fmt(m['peak_rss_mb'])} MB; second-half growth {fmt(m['second_half_growth_mb'])} MB"
    )
    lines.append(
        f"cold start: listening {fmt(cs['listening_ms'].get('median'))} ms,"
        f" first relayed completion {fmt(cs['first_completion_ms'].get('median'))} ms"
        f" (median of {cs['runs']}; worst {fmt(cs['first_completion_ms'].get('max'))} ms)"
    )
    lines.append(f"import function_app: {fmt(imp['function_app_ms'].get('median'))} ms (median of {imp['runs']})")
    heavy = ", ".join(f"{row['module']} {row['cumulative_ms']:.0f}" for row in imp["heaviest"][:6])
    lines.append(f"  heaviest imports (ms, cumulative): {heavy}")
    lines.append("")
    lines.append("targets:")
    for check in document["targets"]:
        mark = "PASS" if check["pass"] else "MISS"
        lines.append(f"  [{mark}] {check['target']}: {fmt(check['value'])} (limit {fmt(check['limit'])}) {check['unit']}".rstrip())
    return "\n".join(lines)


def chart(samples: dict[str, Any], document: dict[str, Any], path: Path) -> str:
    """Latency CDFs, direct against relay, per scenario; the RSS over the soak. Needs matplotlib (requirements-bench.txt)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "skipped (matplotlib is not installed: pip install -r requirements-bench.txt)"
    panels = [(key, f"non-streamed, concurrency {key[1:]}") for key in ("c1", "c16", "c64") if key in samples]
    panels += [("stream_first_content", "streamed: time to first content chunk"), ("gaps", "gaps between content chunks")]
    fig, axes = plt.subplots(2, 3, figsize=(15, 8.5))
    for ax, (key, title) in zip(axes.flat, panels, strict=False):
        for name, color in (("direct", "tab:blue"), ("relay", "tab:orange")):
            values = sorted(v * 1000 for v in samples.get(key, {}).get(name, []))
            if values:
                ax.plot(values, [(i + 1) / len(values) for i in range(len(values))], color=color, label=f"{name} (n={len(values)})")
        ax.set_title(title)
        ax.set_xlabel("ms")
        ax.set_ylabel("fraction of requests")
        if key != "gaps":
            ax.set_xscale("log")
        ax.grid(True, alpha=0.3)
        ax.legend(loc="lower right")
    ax = axes.flat[-1]
    rss = samples.get("rss", [])
    ax.plot([s["requests"] for s in rss], [s["rss_mb"] for s in rss], marker=".", color="tab:green")
    ax.ticklabel_format(axis="y", useOffset=False)
    if rss:
        ax.set_ylim(0, max(s["rss_mb"] for s in rss) * 1.25)
    ax.set_title("relay RSS during the soak")
    ax.set_xlabel("relayed requests")
    ax.set_ylabel("MB")
    ax.grid(True, alpha=0.3)
    fig.suptitle(f"relay vs direct to the emulator ({document['mode']}, {document['when']}, {document['commit']})")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return str(path)
