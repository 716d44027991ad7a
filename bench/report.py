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
    if "latency" in r:
        lines += _main_table(r)
        lines += _floor_table(r)
    if "capacity" in r:
        lines += capacity_table(r["capacity"])
    checks = document["targets"]
    sections = (("targets (ratios and counts: these decide the exit status)", True), ("absolute figures (informational)", False))
    for title, decides in sections:
        rows = [check for check in checks if check["decides"] is decides]
        if rows:
            lines.append(title + ":")
        for check in rows:
            mark = ("PASS" if check["pass"] else "MISS") if decides else ("ok" if check["pass"] else "over")
            lines.append(f"  [{mark}] {check['target']}: {check_text(check)}")
    return "\n".join(lines)


def check_text(check: dict[str, Any]) -> str:
    """``value unit (limit: at most|at least limit unit)``, for the table and the exit messages."""
    unit = f" {check['unit']}" if check["unit"] else ""
    bound = "at least" if check.get("at_least") else "at most"
    return f"{fmt(check['value'])}{unit} (limit: {bound} {fmt(check['limit'])}{unit})"


def _main_table(r: dict[str, Any]) -> list[str]:
    lines = []
    widths = [34, 9, 9, 9, 8]
    lines.append(_row(["latency (ms)", "direct", "relay", "added", "ratio"], widths))
    for key in ("c1", "c16", "c64"):
        lat = r["latency"][key]
        for pct in ("p50", "p95", "p99"):
            d, b = lat["direct"].get(pct), lat["relay"].get(pct)
            lines.append(
                _row([f"non-streamed c={lat['concurrency']} {pct}", fmt(d), fmt(b), fmt(lat["added"].get(pct)), _ratio(b, d)], widths)
            )
    for s, kind in ((r["streaming"], "streamed"), (r["streaming_after_think"], "paused")):
        for label, title in (("first_byte", f"{kind} first byte"), ("first_content", f"{kind} first content")):
            for pct in ("p50", "p99"):
                d, b = s[label]["direct"].get(pct), s[label]["relay"].get(pct)
                lines.append(_row([f"{title} c=1 {pct}", fmt(d), fmt(b), fmt(s[f"added_{label}"].get(pct)), _ratio(b, d)], widths))
    g = r["chunk_gaps"]
    for pct in ("p50", "p95", "max"):
        d, b = g["direct"].get(pct), g["relay"].get(pct)
        added = None if d is None or b is None else round(b - d, 4)
        lines.append(_row([f"gap between chunks ({g['chunk_delay_ms']} ms) {pct}", fmt(d), fmt(b), fmt(added), _ratio(b, d)], widths))
    tel = r["telemetry"]
    for key in ("c1", "c16"):
        for pct in ("p50", "p99"):
            off, on, added = tel[key]["direct"].get(pct), tel[key]["relay"].get(pct), tel[key]["added"].get(pct)
            lines.append(_row([f"telemetry off|on c={key[1:]} {pct}", fmt(off), fmt(on), fmt(added), _ratio(on, off)], widths))
    spread = tel["c1_latency_ratio"]
    lines.append(
        f"  telemetry on/off, c=1 latency ratio per pair: median {fmt(spread['median'])}"
        f" (p10 {fmt(spread['p10'])}, p90 {fmt(spread['p90'])}, {spread['n']} pairs);"
        f" CPU per request {fmt(tel['cpu_ms_per_request']['off'])} -> {fmt(tel['cpu_ms_per_request']['on'])} ms"
    )
    if "cpu_ms_per_request_by_thread" in tel:
        on_threads, off_threads = tel["cpu_ms_per_request_by_thread"]["on"], tel["cpu_ms_per_request_by_thread"]["off"]
        lines.append(
            f"  of which the event loop's thread {fmt(off_threads['event_loop'])} -> {fmt(on_threads['event_loop'])} ms,"
            f" other threads (the exporters') {fmt(off_threads['other_threads'])} -> {fmt(on_threads['other_threads'])} ms"
        )
    ctl = r["controls"]
    for key in ("c1", "c16"):
        for pct in ("p50", "p99"):
            off, on, added = ctl[key]["direct"].get(pct), ctl[key]["relay"].get(pct), ctl[key]["added"].get(pct)
            lines.append(_row([f"controls off|on c={key[1:]} {pct}", fmt(off), fmt(on), fmt(added), _ratio(on, off)], widths))
    lines.append(
        f"  table requests with both controls on: {ctl['table_requests']} over {ctl['relayed_requests']} requests"
        f" ({fmt(ctl['table_requests_per_1000'])} per 1,000; block list of {ctl['blocklist_rows']} rows)"
    )
    near = ctl["near_limits"]
    lines.append(
        f"  {near['users']} users {near['left_at_start']} tokens from a {near['day_limit']}-token day budget:"
        f" {near['answered']} answered, {near['refused_429']} refused (429) of {near['requests']};"
        f" {near['table_requests']} table requests ({fmt(near['table_requests_per_1000'])} per 1,000)"
    )
    lines.append(
        f"  a user's first request on the instance (reads the user's row) p50 {fmt(near['first_request_ms'].get('p50'))} ms,"
        f" later requests p50 {fmt(near['later_requests_ms'].get('p50'))} ms"
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
    for name, parse in r.get("body_parse", {}).items():
        lines.append(f"body parse, {name}: {parse['outcome']} in {fmt(parse['ms'])} ms, peak {fmt(parse['peak_mib'])} MiB allocated")
    lines.append("")
    return lines


def _floor_table(r: dict[str, Any]) -> list[str]:
    """What the relay adds against what the bare passthrough adds, each over the direct call."""
    widths = [44, 9, 9, 8]
    lines = [_row(["relay vs bare passthrough (ms added)", "relay", "floor", "ratio"], widths)]
    titles = {
        "c1_p50": "non-streamed c=1 p50",
        "c1_p99": "non-streamed c=1 p99",
        "c16_p50": "non-streamed c=16 p50",
        "c16_p99": "non-streamed c=16 p99",
        "first_byte_p50": "streamed first byte c=1 p50",
        "first_byte_after_think_p50": "paused stream first byte c=1 p50",
        "first_content_after_think_p50": "paused stream first content c=1 p50",
    }
    for key, title in titles.items():
        row = r["floor_ratios"][key]
        ratio = row["ratio"]
        lines.append(
            _row([title, fmt(row["relay_added_ms"]), fmt(row["floor_added_ms"]), "n/a" if ratio is None else f"{ratio:.2f}x"], widths)
        )
    cpu = r["cpu"]["c16"]
    relay_cpu, floor_cpu = cpu["relay_ms_per_relayed_request"], cpu.get("floor_ms_per_floor_request")
    lines.append(_row(["CPU ms per request c=16", fmt(relay_cpu), fmt(floor_cpu), _ratio(relay_cpu, floor_cpu)], widths))
    lines.append("")
    return lines


def _knee_text(part: dict[str, Any], name: str, unit: str) -> str:
    value = part["knee"].get(name)
    if value is None:
        return f"{name}: below the first step"
    return f"{name}: {'at least ' if part['knee_is_lower_bound'].get(name) else ''}{value} {unit}"


def capacity_table(c: dict[str, Any]) -> list[str]:
    """One row per step: what the relay and the floors add (p50/p99), errors, the relay's CPU and memory, and the knees."""
    s, p = c["streams"], c["plain"]
    lines = [
        f"capacity of one relay worker process, runtime {c['runtime']} ({c['layout']});"
        f" relay telemetry {c.get('relay_telemetry', 'off')}; relay pool {c['relay_upstream_connections']} connections,"
        f" per step a ramp of one request's duration, then a {c['window_s']:g} s window",
        "",
        f"streams: a content chunk every {s['chunk_delay_ms']} ms, {s['words']} chunks; + = delay added between chunks (ms)",
        *_ramp_lines(s, "chunk_delay", ("1st chunk p50/p99", "first_chunk_ms"), "streams", c["limit_ms"]),
        f"non-streamed: Azure OpenAI answers after {p['upstream_delay_s']:g} s; + = latency added (ms)",
        *_ramp_lines(p, "latency", ("latency p50/p99", "latency_ms"), "calls in flight", c["limit_ms"]),
    ]
    if "platform" in c:
        lines += _platform_lines(c)
    return lines


def _platform_lines(c: dict[str, Any]) -> list[str]:
    """The relay over the platform floor (both through the worker): CPU per chunk and per call, step by step, and the ratios."""
    platform = c["platform"]
    lines = ["relay / platform floor, both through the worker and the host stand-in (CPU = worker + host, ms per unit):"]
    for kind, unit in (("streams", "chunk"), ("plain", "call")):
        for step in c[kind]["steps"]:
            relay, floor = step.get("relay"), step.get("platform")
            if not (relay and floor):
                continue
            mine, base = relay[f"cpu_ms_per_{unit}"], floor[f"cpu_ms_per_{unit}"]
            added = relay.get("vs_platform", {})
            key = "chunk_delay_p99" if kind == "streams" else "latency_p99"
            lines.append(
                f"  {kind} {step['concurrency']}: CPU per {unit} {fmt(mine.get('total'))} vs {fmt(base.get('total'))}"
                f" (worker {fmt(mine.get('relay'))} vs {fmt(base.get('platform'))});"
                f" added p99 {fmt(relay['added_ms'].get(key))} vs {fmt(floor['added_ms'].get(key))} ms"
                f" ({_times(added.get(f'added_{key}'))})"
            )
    lines.append(
        f"  knee ratio streams {_times(platform['streams_knee_ratio'])}, calls {_times(platform['plain_knee_ratio'])};"
        f" first chunk p99 at the relay's stream knee {_times(platform['first_chunk_p99_ratio_at_knee'])}"
    )
    lines.append("")
    return lines


def _times(ratio: float | None) -> str:
    return "n/a" if ratio is None else f"{ratio:.2f}x"


def _ramp_lines(part: dict[str, Any], added_key: str, own: tuple[str, str], unit: str, limit_ms: float) -> list[str]:
    platform = any("platform" in step for step in part["steps"])
    widths = [6, 15, 15, *([15] if platform else []), 17, 7, 9, 8, 9]
    head = ["conc", "relay+ p50/p99", "floor+ p50/p99", *(["platf+ p50/p99"] if platform else []), own[0]]
    knees = [_knee_text(part, name, unit) for name in ("relay", "floor", *(["platform"] if platform else []))]
    return [
        _row([*head, "errors", "relay CPU", "RSS MB", "rig late"], widths),
        *(_capacity_row(step, added_key, own[1], widths, platform) for step in part["steps"]),
        f"  knee (p99 added <= {limit_ms:g} ms, nothing failed): {'; '.join(knees)}",
        "",
    ]


def _pair(values: dict[str, Any], p50: str, p99: str) -> str:
    return f"{fmt(values.get(p50))}/{fmt(values.get(p99))}"


def _capacity_row(step: dict[str, Any], added_key: str, relay_key: str, widths: list[int], platform: bool) -> str:
    relay = step.get("relay")
    others = [step.get("floor"), *([step.get("platform")] if platform else [])]
    added = [_pair(side["added_ms"], f"{added_key}_p50", f"{added_key}_p99") if side else "-" for side in (relay, *others)]
    own = _pair(relay[relay_key], "p50", "p99") if relay else "-"
    errors = "|".join(str(side["errors"]) if side else "-" for side in (relay, *others))
    cpu = f"{relay['cpu_share']['relay'] * 100:.0f}%" if relay else "-"
    rss = fmt(relay["rss_mb"]) if relay else "-"
    rig = "yes" if step["rig_saturated"] else "no"
    return _row([step["concurrency"], *added, own, errors, cpu, rss, rig], widths)


def chart(samples: dict[str, Any], document: dict[str, Any], path: Path) -> str:
    """Latency CDFs per scenario and the RSS over the soak (a full run); the capacity ramps and their knees. Needs matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "skipped (matplotlib is not installed: pip install -r requirements-bench.txt)"
    capacity = document["results"].get("capacity")
    rows = (2 if samples else 0) + (1 if capacity else 0)
    fig, axes = plt.subplots(rows, 3, figsize=(15, 4.25 * rows), squeeze=False)
    if samples:
        _latency_panels(samples, list(axes[0]) + list(axes[1]))
    if capacity:
        _capacity_panels(capacity, list(axes[-1]))
    fig.suptitle(f"relay vs direct to the emulator and a bare passthrough ({document['mode']}, {document['when']}, {document['commit']})")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return str(path)


_COLORS = {"direct": "tab:blue", "relay": "tab:orange", "floor": "tab:gray", "platform": "tab:purple"}


def _latency_panels(samples: dict[str, Any], axes: list[Any]) -> None:
    panels: list[tuple[str, str]] = [(key, f"non-streamed, concurrency {key[1:]}") for key in ("c1", "c16", "c64") if key in samples]
    panels += [("stream_first_content", "streamed: time to first content chunk"), ("gaps", "gaps between content chunks")]
    for ax, (key, title) in zip(axes, panels, strict=False):
        for name, color in _COLORS.items():
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
    ax = axes[-1]
    rss = samples.get("rss", [])
    ax.plot([s["requests"] for s in rss], [s["rss_mb"] for s in rss], marker=".", color="tab:green")
    ax.ticklabel_format(axis="y", useOffset=False)
    if rss:
        ax.set_ylim(0, max(s["rss_mb"] for s in rss) * 1.25)
    ax.set_title("relay RSS during the soak")
    ax.set_xlabel("relayed requests")
    ax.set_ylabel("MB")
    ax.grid(True, alpha=0.3)


def _capacity_panels(capacity: dict[str, Any], axes: list[Any]) -> None:
    """p99 added delay per step for the relay and the floors, with the limit and the relay's knee; the relay's CPU and RSS."""
    limit = capacity["limit_ms"]
    parts = (
        ("streams", "chunk_delay_p99", "streams: p99 delay added between chunks"),
        ("plain", "latency_p99", "non-streamed: p99 latency added"),
    )
    for ax, (kind, key, title) in zip(axes, parts, strict=False):
        part = capacity[kind]
        for name in ("relay", "floor", "platform"):
            points = [(step["concurrency"], step[name]["added_ms"][key]) for step in part["steps"] if name in step]
            points = [(c, v) for c, v in points if v is not None]
            ax.plot([c for c, _ in points], [v for _, v in points], marker="o", color=_COLORS[name], label=name)
        ax.axhline(limit, color="tab:red", linestyle="--", linewidth=1, label=f"limit {limit:g} ms")
        if part["knee"].get("relay"):
            ax.axvline(part["knee"]["relay"], color=_COLORS["relay"], linestyle=":", label=f"relay knee {part['knee']['relay']}")
        ax.set_xscale("log")
        ax.set_yscale("symlog", linthresh=1.0)
        ax.set_title(title)
        ax.set_xlabel("concurrent requests")
        ax.set_ylabel("ms (symlog)")
        ax.grid(True, alpha=0.3)
        ax.legend(loc="upper left")
    ax = axes[2]
    for kind, marker in (("streams", "o"), ("plain", "s")):
        steps = [step for step in capacity[kind]["steps"] if "relay" in step]
        ax.plot(
            [step["concurrency"] for step in steps],
            [step["relay"]["cpu_share"]["relay"] * 100 for step in steps],
            marker=marker,
            color="tab:orange",
            label=f"relay CPU, {kind}",
        )
    ax.set_xscale("log")
    ax.set_ylim(0, 110)
    ax.set_xlabel("concurrent requests")
    ax.set_ylabel("% of one CPU")
    ax.set_title("relay CPU (orange) and RSS (green)")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper left")
    rss_axis = ax.twinx()
    for kind, marker in (("streams", "o"), ("plain", "s")):
        steps = [step for step in capacity[kind]["steps"] if "relay" in step]
        rss_axis.plot(
            [step["concurrency"] for step in steps], [step["relay"]["rss_mb"] for step in steps], marker=marker, color="tab:green"
        )
    rss_axis.set_ylabel("MB")
    rss_axis.set_ylim(bottom=0)
