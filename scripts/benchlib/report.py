"""Ratios, the issue's targets, and the tables: on the console, and in Markdown from the JSON.

The Markdown tables of README.md and docs/benchmark.md are generated from a
results JSON (``scripts/bench --table docs/bench.json``) between the markers
``<!-- bench:NAME -->`` and ``<!-- /bench:NAME -->``: nobody types a figure.
"""

from __future__ import annotations

import re
import statistics
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

FULL_COUNTS = (100, 1000)  # the counts the targets are defined for


@dataclass
class Ratio:
    """``factor`` × ``a``'s ``a_metric`` / ``b``'s ``b_metric``, round by round, compared
    with ``limit`` (``op``: <= or >=).  Without ``b`` the value is ``a``'s median itself
    (``unit`` "s": seconds).  A metric is a per-run list of the results: ``times_s``,
    ``first_s`` (a stream's first item), ``maxrss_kib``."""

    label: str
    a: str
    b: str | None
    factor: float = 1.0
    op: str = "<="
    limit: float | None = None
    a_metric: str = "times_s"
    b_metric: str = "times_s"
    unit: str = "x"


def ratio_specs(small: int, big: int, records: int = 100000) -> list[Ratio]:
    """The issue's targets (those with a limit), then the floors and the other figures."""
    loops, typer = big // small, '`python -c "import typer"`'
    inv, one = f"inventory-{records}", "inventory-1"
    return [
        Ratio(f"`certkit status` / {typer}", "startup/status", "startup/typer", limit=1.1),
        Ratio(f"`certkit --help` / {typer}", "startup/help", "startup/typer", limit=1.1),
        Ratio(f"`certkit --version` / {typer}", "startup/version", "startup/typer"),
        Ratio(f"`certkit issue-server HOST --out DIR` / {typer}", "startup/issue-server",
              "startup/typer"),
        Ratio("`certkit setup` / openssl EC recipe (CA + server + client)", "setup/certkit",
              "setup/openssl-ec", limit=1.3),
        Ratio(f"cfssl loop / `certkit issue-client --count {small}` (disk writer running)",
              f"clients-{small}/cfssl", f"clients-{small}/certkit", op=">=", limit=6.0),
        Ratio(f"{loops} cfssl {small}-loops / `certkit issue-client --count {big}` "
              "(disk writer running)", f"clients-{small}/cfssl", f"clients-{big}/certkit",
              factor=loops, op=">=", limit=15.0),
        Ratio(f"`certkit issue-client --count {big}`, seconds (disk writer running)",
              f"clients-{big}/certkit", None, limit=0.45, unit="s"),
        Ratio(f"`certkit issue-client --count {big}` / its floor (crypto + files)",
              f"clients-{big}/certkit", f"floor/files-{big}"),
        Ratio(f"`certkit issue-client --count {big}` / crypto alone",
              f"clients-{big}/certkit", f"floor/crypto-{big}"),
        Ratio(f"`certkit issue-client --count {small}` / its floor (crypto + files)",
              f"clients-{small}/certkit", f"floor/files-{small}"),
        Ratio(f"`certkit issue-client --count {small}` / crypto alone",
              f"clients-{small}/certkit", f"floor/crypto-{small}"),
        Ratio("Python + the imports an issuance needs, seconds", "floor/imports", None,
              unit="s"),
        Ratio(f"one `issue-client` at {records:,} records / in a store of one",
              f"{inv}/issue-client", f"{one}/issue-client", limit=1.2),
        Ratio(f"`certkit status` at {records:,} records, seconds", f"{inv}/status", None,
              limit=0.3, unit="s"),
        Ratio(f"`list --kind client --json` at {records:,}: first record / whole list",
              f"{inv}/list", f"{inv}/list", a_metric="first_s", limit=0.1),
        Ratio(f"`list --kind client --json`: peak memory at {records:,} / at 1 record",
              f"{inv}/list", f"{one}/list", a_metric="maxrss_kib", b_metric="maxrss_kib",
              limit=1.5),
    ]  # fmt: skip


def by_key(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["key"]: r for r in doc["results"]}


def _paired(spec: Ratio, a: dict[str, Any], b: dict[str, Any]) -> tuple[float, float, int]:
    """The ratio of the medians, the median of the round-by-round ratios, and how many."""
    av, bv = a.get(spec.a_metric) or [], b.get(spec.b_metric) or []
    of_medians = spec.factor * statistics.median(av) / statistics.median(bv)
    b_by_round = dict(zip(b["rounds"], bv, strict=False))
    pairs = [
        spec.factor * x / b_by_round[r]
        for r, x in zip(a["rounds"], av, strict=False)
        if b_by_round.get(r)
    ]
    return of_medians, statistics.median(pairs) if pairs else of_medians, len(pairs)


def compute_ratios(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """Each figure of :func:`ratio_specs` whose cases ran: of the medians and paired."""
    rows = by_key(doc)
    small, big = doc["counts"]
    full = (small, big) == FULL_COUNTS
    out = []
    for spec in ratio_specs(small, big, doc.get("records", 100000)):
        a = rows.get(spec.a)
        b = rows.get(spec.b) if spec.b else None
        if not a or not a.get(spec.a_metric) or (spec.b and (not b or not b.get(spec.b_metric))):
            continue
        cpu = None  # the same figure on CPU time: steadier than wall time on a loaded machine
        if b is None:
            of_medians = value = statistics.median(a[spec.a_metric])
            pairs = 0
            cpu = statistics.median(a["cpu_s"]) if spec.a_metric == "times_s" else None
        else:
            of_medians, value, pairs = _paired(spec, a, b)
            if spec.a_metric == spec.b_metric == "times_s":
                cpu = _paired(replace(spec, a_metric="cpu_s", b_metric="cpu_s"), a, b)[1]
        met = None
        if spec.limit is not None and full:
            met = value <= spec.limit if spec.op == "<=" else value >= spec.limit
        target = f"{spec.op} {spec.limit}" if spec.limit is not None else None
        out.append({"label": spec.label, "a": spec.a, "b": spec.b, "factor": spec.factor,
                    "of_medians": of_medians, "paired_median": value, "pairs": pairs,
                    "target": target, "met": met, "unit": spec.unit, "cpu": cpu})  # fmt: skip
    return out


# ---------------------------------------------------------------- formatting


def fmt_time(s: float | None) -> str:
    if s is None:
        return "-"
    if s < 1:
        return f"{s * 1000:.0f} ms"
    return f"{s:.2f} s" if s < 10 else f"{s:.1f} s"


def fmt_ratio(x: float) -> str:
    return f"{x:.2f}x" if x < 10 else f"{x:.1f}x"


def verdict(met: bool | None) -> str:
    return "n/a" if met is None else ("met" if met else "MISSED")


def console(doc: dict[str, Any]) -> str:
    """Every row and every ratio, for the terminal."""
    head = f"{'case':26} {'tool':40} {'median':>9} {'cpu':>9} {'runs':>4}  note"
    lines = [head, "-" * len(head)]
    for r in doc["results"]:
        note = f"FAILED: {r['failed']}" if r.get("failed") else r["note"]
        lines.append(
            f"{r['key']:26} {r['tool'][:40]:40} {fmt_time(r['median_s']):>9} "
            f"{fmt_time(r['cpu_median_s']):>9} {r['runs']:>4}  {note}"
        )
    lines.append("")
    for x in doc["ratios"]:
        target = f" (target {x['target']}: {verdict(x['met'])})" if x["target"] else ""
        value = fmt_time(x["paired_median"]) if x["b"] is None else fmt_ratio(x["paired_median"])
        lines.append(f"{x['label'].replace('`', '')}: {value}{target}")
    return "\n".join(lines)


def _row_cells(r: dict[str, Any], ref: dict[str, Any] | None) -> str:
    """A table row; the ratio is this row's median over ``ref``'s."""
    ratio = "-"
    if ref and ref["median_s"] and r["median_s"]:
        ratio = fmt_ratio(r["median_s"] / ref["median_s"])
    note = f"failed: {r['failed']}" if r.get("failed") else r["note"]
    return (
        f"| {r['tool']} | {fmt_time(r['median_s'])} | {fmt_time(r['cpu_median_s'])} | "
        f"{r['runs']} | {ratio} | {note} |"
    )


def results_table(doc: dict[str, Any]) -> str:
    """The docs page's tables: start-up, the whole job, client certificates."""
    rows = by_key(doc)
    small, big = doc["counts"]
    out = ["| start-up | median | cpu | runs | / import typer | |", "|---|---:|---:|---:|---:|---|"]
    typer = rows.get("startup/typer")
    out += [_row_cells(r, typer) for r in doc["results"] if r["group"] == "startup"]
    out += [
        "",
        "| the whole job | median | cpu | runs | vs certkit setup | |",
        "|---|---:|---:|---:|---:|---|",
    ]
    ref = rows.get("setup/certkit")
    job = [r for r in doc["results"] if r["group"] in ("setup", "full flow")]
    out += [_row_cells(r, ref) for r in job]
    out += [
        "",
        "| client certificates | median | cpu | runs | vs certkit | |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for count in (small, big):
        ref = rows.get(f"clients-{count}/certkit")
        for r in doc["results"]:
            if r["group"] == "clients" and r["count"] == count:
                cells = _row_cells(r, ref)
                out.append(cells.replace(f"| {r['tool']} |", f"| {count}: {r['tool']} |", 1))
    cfssl = rows.get(f"clients-{small}/cfssl")
    ref = rows.get(f"clients-{big}/certkit")
    if cfssl and cfssl["median_s"] and ref and ref["median_s"]:
        loops = big // small
        t = loops * cfssl["median_s"]
        out.append(
            f"| {big}: {loops} cfssl {small}-loops ({loops} x the median above) | "
            f"{fmt_time(t)} | - | - | {fmt_ratio(t / ref['median_s'])} | derived |"
        )
    if "floor/imports" in rows:
        out.append(_row_cells(rows["floor/imports"], None))
    return "\n".join(out + inventory_table(doc))


def inventory_table(doc: dict[str, Any]) -> list[str]:
    """Each inventory case in a store of one record and in the big one, side by side."""
    rows = by_key(doc)
    big = doc.get("records", 100000)
    out = ["", f"| store size | 1 record | {big:,} records | ratio | |", "|---|---:|---:|---:|---|"]
    for case in ("issue-client", "status", "list"):
        a, b = rows.get(f"inventory-1/{case}"), rows.get(f"inventory-{big}/{case}")
        if not a or not b or not a["median_s"] or not b["median_s"]:
            continue
        note = ""
        if b.get("first_s") and b.get("maxrss_kib"):
            first = statistics.median(b["first_s"])
            rss = [statistics.median(r["maxrss_kib"]) / 1024 for r in (a, b)]
            note = (f"first record after {fmt_time(first)}; peak memory {rss[0]:.0f} MiB "
                    f"/ {rss[1]:.0f} MiB")  # fmt: skip
        out.append(f"| {b['tool']} | {fmt_time(a['median_s'])} | {fmt_time(b['median_s'])} | "
                   f"{fmt_ratio(b['median_s'] / a['median_s'])} | {note} |")  # fmt: skip
    return out if len(out) > 3 else []


def measurements_table(doc: dict[str, Any]) -> list[str]:
    """The figures other benchmarks put in the JSON's ``measurements`` (see bench.py)."""
    out = []
    for name, figures in sorted(doc.get("measurements", {}).items()):
        for m in figures:
            target = (m.get("target") or "").replace("<=", "≤").replace(">=", "≥")
            met = verdict(m.get("met")) if m.get("target") else ""
            out.append(f"| {name}: {m['label']} | {m['value']:g} {m.get('unit', '')} | - | "
                       f"{target or '-'} | {met} |")  # fmt: skip
    return out


def targets_table(doc: dict[str, Any]) -> str:
    """The issue's targets: each ratio taken round by round (median), and its verdict."""
    out = ["| measure | result | on CPU time | target | |", "|---|---:|---:|---:|---|"]
    for x in doc["ratios"]:
        value = fmt_time(x["paired_median"]) if x["b"] is None else fmt_ratio(x["paired_median"])
        cpu = "-"
        if x.get("cpu") is not None:
            cpu = fmt_time(x["cpu"]) if x["b"] is None else fmt_ratio(x["cpu"])
        target = (x["target"] or "").replace("<=", "≤").replace(">=", "≥")
        if x["target"] and x["b"] is not None:
            target += "x"
        elif x["target"]:
            target += " s"
        out.append(
            f"| {x['label']} | {value} | {cpu} | {target or '-'} | "
            f"{verdict(x['met']) if x['target'] else ''} |"
        )
    return "\n".join(out + measurements_table(doc))


def version_of(text: str) -> str:
    """``3.0.19`` from ``OpenSSL 3.0.19 27 Jan 2026 (Library: ...)``; the text if none."""
    found = re.search(r"\d+(\.\d+)+", text)
    return found.group(0) if found else text


def machine_line(doc: dict[str, Any]) -> str:
    m, v = doc["machine"], doc["versions"]
    names = {"openssl": "OpenSSL", "mkcert": "mkcert", "cfssl": "cfssl", "easyrsa": "easy-rsa"}
    peers = ", ".join(f"{name} {version_of(v[k])}" for k, name in names.items())
    runs = doc.get("runs") or [{"command": doc["command"], "machine": m}]
    loads = "; ".join(
        f"`{r['command']}`: load average {r['machine']['load_average_at_start']} at the "
        f"start, {r['machine']['load_average_1_5_15']} at the end"
        for r in runs
    )
    together = " (run at the same time)" if len(runs) > 1 else ""
    return (
        f"Measured on {doc['started'][:10]}: {m['cpus']} cores ({m['cpu_model']}), Linux "
        f"{m['kernel']}, Python {m['python']}; {v['certkit']}; {peers}. "
        f"Commands{together}: {loads}.{writer_line(doc)}"
    )


def writer_line(doc: dict[str, Any]) -> str:
    """What the concurrent disk writer of the clients group wrote, when it ran."""
    w = next((r["writer"] for r in doc["results"] if r.get("writer")), None)
    if not w:
        return ""
    return (f" The client certificates ran next to a disk writer (`benchlib/writer.py`): "
            f"{w['mib']:.0f} MiB in {w['seconds']:.0f} s, {w['mib_per_s']:.0f} MiB/s, "
            "an fsync every 8 MiB.")  # fmt: skip


def sections(doc: dict[str, Any]) -> dict[str, str]:
    """The generated sections, by marker name."""
    return {
        "summary": targets_table(doc),
        "results": "\n\n".join((machine_line(doc), results_table(doc), targets_table(doc))),
    }


def rewrite(text: str, name: str, body: str) -> str:
    """``text`` with the lines between ``<!-- bench:NAME -->`` and ``<!-- /bench:NAME -->``
    replaced by ``body`` (ValueError when the markers are missing)."""
    begin, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    i, j = text.find(begin), text.find(end)
    if i < 0 or j < i:
        raise ValueError(f"no {begin} ... {end} section")
    return text[: i + len(begin)] + "\n" + body + "\n" + text[j:]


def render_files(doc: dict[str, Any], paths: list[Path]) -> dict[Path, str]:
    """Each file's new text: every section of :func:`sections` it has markers for."""
    out = {}
    for path in paths:
        new = path.read_text()
        found = False
        for name, body in sections(doc).items():
            if f"<!-- bench:{name} -->" in new:
                new, found = rewrite(new, name, body), True
        if not found:
            raise ValueError(f"{path} has no <!-- bench:NAME --> section")
        out[path] = new
    return out
