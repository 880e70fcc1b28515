"""The benchmark's figures as Markdown, and the "latest run" section of BENCHMARKS.md."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.harness import ROOT

START = "<!-- bench:latest-run:start -->"
END = "<!-- bench:latest-run:end -->"


def _n(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and not value.is_integer():
        return f"{value:,.1f}"
    return f"{int(value):,}"


def _outcomes(pipeline: dict[str, Any]) -> str:
    outcomes = pipeline.get("counters", {}).get("outcomes", {})
    total = sum(outcomes.values())
    if not total:
        return ""
    late = outcomes.get("late", 0)
    expired = outcomes.get("expired", 0)
    return (f"; {late:,.0f} events late ({late / total:.1%}) and {expired:,.0f} expired: "
            "behind their ward's watermark by more than the grace")


def _span(text: str) -> str:
    """'5 days, 0:00:00' -> '120 h'; '0:20:00' -> '20 min'."""
    days, _, clock = text.rpartition(", ") if "day" in text else ("", "", text)
    hours, minutes, _seconds = (int(float(x)) for x in clock.split(":"))
    total_min = (int(days.split()[0]) * 24 * 60 if days else 0) + hours * 60 + minutes
    return f"{total_min // 60} h" if total_min % 60 == 0 else f"{total_min} min"


def render(results: dict[str, Any]) -> str:
    m = results["machine"]
    lines = [
        f"### Run of {results['date']} ({results['mode']} mode)",
        "",
        f"Command: `{results['command']}`  ",
        f"Machine: {m['cores']} cores ({m['cpu_model']}), {m['ram_gib']} GiB RAM, Linux "
        f"{m['kernel']}, Python {m['python']}; {results['broker']}.  ",
        f"Load average (1/5/15 min) at start {m['loadavg']}, at end {m.get('loadavg_end')}"
        f" (other helpers share the machine).  ",
    ]
    feed = results.get("feed", {})
    if feed:
        lines.append(
            f"Input: {_n(feed['events'])} SYNTHETIC simulator events "
            f"({', '.join(f'{k} {_n(v)}' for k, v in feed['by_type'].items())}; incidents "
            f"{feed['incident_share']:.1%}), mean {feed['mean_value_bytes']} bytes per value, "
            f"event times spread over the {_span(feed['span'])} before the run.")
    lines += ["", "| figure | value |", "|---|---|"]
    ceiling = results.get("ceiling")
    pipeline = results.get("pipeline")
    if ceiling:
        lines.append(f"| ceiling: aiokafka passthrough, one process | "
                     f"**{_n(ceiling['events_per_s'])} events/s** "
                     f"({_n(ceiling['events'])} in {ceiling['seconds']} s, "
                     f"{ceiling['cpu_cores_used']} cores) |")
    single = results.get("passthrough_per_message")
    if single:
        lines.append(f"| reference: same passthrough, one `send()` per record | "
                     f"{_n(single['events_per_s'])} events/s |")
    if pipeline:
        lines.append(
            f"| pipeline: one worker, drained to state + situations | "
            f"**{_n(pipeline['events_per_s'])} events/s** ({_n(pipeline['events'])} in "
            f"{pipeline['seconds']} s; steady {_n(pipeline['steady_events_per_s'])}/s; "
            f"{pipeline['worker_cpu_us_per_event']} µs worker CPU per event"
            f"{_outcomes(pipeline)}) |")
    if "ratio_pipeline_to_ceiling" in results:
        ratio = results["ratio_pipeline_to_ceiling"]
        if ceiling and pipeline and ceiling.get("events_per_s"):
            ratio = pipeline["events_per_s"] / ceiling["events_per_s"]
        per_record = ""
        if single and pipeline and single.get("events_per_s"):
            per_record = (f" (against the one-`send()`-per-record passthrough: "
                          f"{pipeline['events_per_s'] / single['events_per_s']:.1%})")
        lines.append(f"| ratio pipeline / ceiling (same run) | **{ratio:.2%}**{per_record} |")
    memory = results.get("memory", {})
    if memory:
        parts = [f"0 events {memory.get('rss_0_mib')} MiB"]
        if "rss_1m_mib" in memory:
            parts.append(f"1M {memory['rss_1m_mib']} MiB")
        if "rss_10m_mib" in memory:
            parts.append(f"10M {memory['rss_10m_mib']} MiB")
        parts.append(f"end of drain {memory.get('rss_end_mib')} MiB "
                     f"(quarters {memory.get('rss_quarters_mib')})")
        if "rss_after_latency_mib" in memory:
            parts.append(f"after the latency runs {memory['rss_after_latency_mib']} MiB")
        lines.append(f"| worker RSS | {'; '.join(parts)} |")
    for level in results.get("latency", []):
        lines.append(
            f"| latency at {_n(level['offered_per_s'])} events/s offered "
            f"({_n(level['achieved_per_s'])}/s sent, {level['seconds']:.0f} s) | "
            f"p50 {_n(level['p50_ms'])} ms, p95 {_n(level['p95_ms'])} ms, "
            f"**p99 {_n(level['p99_ms'])} ms**, max {_n(level['max_ms'])} ms over "
            f"{_n(level['samples'])} situations; tail after the last send "
            f"{level['tail_s']} s |")
    codec = results.get("codec")
    if codec:
        lines.append(
            f"| codec, one core ({_n(codec['records'])} records) | encode "
            f"{_n(codec['codec_encode_per_s'])}/s, decode {_n(codec['codec_decode_per_s'])}/s;"
            f" worker fast paths: encode unvalidated "
            f"{_n(codec.get('codec_encode_unvalidated_per_s'))}/s, trusted decode "
            f"{_n(codec.get('codec_decode_trusted_per_s'))}/s"
            f" (JSON: {_n(codec['json_encode_per_s'])}/s, {_n(codec['json_decode_per_s'])}/s;"
            f" {codec['avro_mean_bytes']} vs {codec['json_mean_bytes']} bytes) |")
    scale = results.get("scale_out")
    if scale:
        one, two = scale["workers_1"], scale["workers_2"]
        lines.append(
            f"| scale-out ({_n(scale['events'])} events) | 1 worker "
            f"{_n(one['events_per_s'])}/s, 2 workers {_n(two['events_per_s'])}/s "
            f"(x{scale['speedup']}); parallelism capped at "
            f"{scale['partitions']['input_topics']} partitions |")
    footprint = results.get("footprint")
    if footprint:
        lines.append(
            f"| footprint ({_n(footprint['events'])} events, {footprint['wards']} wards; "
            f"capacity model inputs) | input {footprint['input_bytes_per_event']} B and "
            f"enriched {footprint['enriched_bytes_per_event']} B per event on disk; ward state "
            f"{_n(footprint['state_bytes_per_ward_mean'])} B mean, "
            f"{_n(footprint['state_bytes_per_ward_max'])} B largest; changelog "
            f"{footprint['changelog_bytes_per_event']} B per event "
            f"({footprint['changelog_flushes_per_ward_per_s']} flushes per ward and s); "
            f"situations {footprint['situation_bytes_per_record']} B each, "
            f"{footprint['situations_per_ward_per_minute']} per ward and minute "
            f"({_n(footprint['situation_bytes_per_ward_per_minute'])} B) |")
    verdict = results.get("verify")
    if verdict is not None:
        lines.append(f"| state check | {'correct' if verdict['ok'] else 'FAILED'} |")
    lines.append(f"| whole run | {results.get('total_s')} s |")
    if results.get("broker_restarted_during_run"):
        lines.append("")
        lines.append("**The shared broker was restarted by another user during this run**: "
                     "figures measured across the restart are disturbed.")
    if results.get("worker_root") and results["worker_root"] != str(ROOT):
        lines.append("")
        lines.append(f"Workers ran from `{results['worker_root']}`.")
    return "\n".join(lines) + "\n"


def update_benchmarks_md(path: Path, section: str) -> None:
    """Replace the text between the latest-run markers (or append them)."""
    replace_section(path, section, START, END, "Latest run")


def replace_section(path: Path, section: str, start: str, end: str, heading: str) -> None:
    """Replace the text between the markers `start` and `end` of a Markdown file, or append
    them under `heading`: the parts of BENCHMARKS.md a run rewrites."""
    block = f"{start}\n{section}{end}"
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    if start in text and end in text:
        head, rest = text.split(start, 1)
        _, tail = rest.split(end, 1)
        text = head + block + tail
    else:
        text = text.rstrip("\n") + f"\n\n## {heading}\n\n" + block + "\n"
    path.write_text(text)
