"""Ratios, the issue's targets, and the tables: on the console, and in Markdown from the JSON.

The Markdown tables of README.md and docs/benchmark.md are generated from a
results JSON (``scripts/bench --table docs/bench.json``) between the markers
``<!-- bench:NAME -->`` and ``<!-- /bench:NAME -->``: nobody types a figure.
"""

from __future__ import annotations

import re
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FULL_COUNTS = (100, 1000)  # the counts the targets are defined for


@dataclass
class Ratio:
    """``factor`` × time(``a``) / time(``b``), compared with ``limit`` (``op``: <= or >=)."""

    label: str
    a: str
    b: str
    factor: float = 1.0
    op: str = "<="
    limit: float | None = None


def ratio_specs(small: int, big: int) -> list[Ratio]:
    loops = big // small
    return [
        Ratio(
            '`certkit status` / `python -c "import typer"`',
            "startup/status",
            "startup/typer",
            limit=1.5,
        ),
        Ratio(
            '`certkit --help` / `python -c "import typer"`',
            "startup/help",
            "startup/typer",
            limit=1.5,
        ),
        Ratio(
            '`certkit --version` / `python -c "import typer"`', "startup/version", "startup/typer"
        ),
        Ratio(
            '`certkit issue-server HOST --out DIR` / `python -c "import typer"`',
            "startup/issue-server",
            "startup/typer",
        ),
        Ratio(
            "`certkit setup` / openssl EC recipe (CA + server + client)",
            "setup/certkit",
            "setup/openssl-ec",
            limit=2.0,
        ),
        Ratio(
            f"cfssl loop / `certkit issue-client --count {small}`",
            f"clients-{small}/cfssl",
            f"clients-{small}/certkit",
            op=">=",
            limit=4.0,
        ),
        Ratio(
            f"{loops} cfssl {small}-loops / `certkit issue-client --count {big}`",
            f"clients-{small}/cfssl",
            f"clients-{big}/certkit",
            factor=loops,
            op=">=",
            limit=10.0,
        ),
    ]


def by_key(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["key"]: r for r in doc["results"]}


def compute_ratios(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """Each ratio of :func:`ratio_specs` whose two cases ran: of the medians and paired."""
    rows = by_key(doc)
    small, big = doc["counts"]
    out = []
    for spec in ratio_specs(small, big):
        a, b = rows.get(spec.a), rows.get(spec.b)
        if not a or not b or not a["median_s"] or not b["median_s"]:
            continue
        b_by_round = dict(zip(b["rounds"], b["times_s"], strict=True))
        pairs = [
            spec.factor * t / b_by_round[r]
            for r, t in zip(a["rounds"], a["times_s"], strict=True)
            if r in b_by_round
        ]
        value = statistics.median(pairs) if pairs else spec.factor * a["median_s"] / b["median_s"]
        met = None
        if spec.limit is not None and (small, big) == FULL_COUNTS:
            met = value <= spec.limit if spec.op == "<=" else value >= spec.limit
        out.append(
            {
                "label": spec.label,
                "a": spec.a,
                "b": spec.b,
                "factor": spec.factor,
                "of_medians": spec.factor * a["median_s"] / b["median_s"],
                "paired_median": value,
                "pairs": len(pairs),
                "target": f"{spec.op} {spec.limit}" if spec.limit else None,
                "met": met,
            }
        )
    certkit_big = rows.get(f"clients-{big}/certkit")
    if certkit_big and certkit_big["median_s"]:
        t = certkit_big["median_s"]
        out.append(
            {
                "label": f"`certkit issue-client --count {big}`, seconds",
                "a": certkit_big["key"],
                "b": None,
                "factor": 1.0,
                "of_medians": t,
                "paired_median": t,
                "pairs": 0,
                "target": "<= 1.2",
                "met": t <= 1.2 if (small, big) == FULL_COUNTS else None,
            }
        )
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
    return "\n".join(out)


def targets_table(doc: dict[str, Any]) -> str:
    """The issue's targets: each ratio taken round by round (median), and its verdict."""
    out = ["| measure | result | target | |", "|---|---:|---:|---|"]
    for x in doc["ratios"]:
        value = fmt_time(x["paired_median"]) if x["b"] is None else fmt_ratio(x["paired_median"])
        target = (x["target"] or "").replace("<=", "≤").replace(">=", "≥")
        if x["target"] and x["b"] is not None:
            target += "x"
        elif x["target"]:
            target += " s"
        out.append(
            f"| {x['label']} | {value} | {target or '-'} | "
            f"{verdict(x['met']) if x['target'] else ''} |"
        )
    return "\n".join(out)


def version_of(text: str) -> str:
    """``3.0.19`` from ``OpenSSL 3.0.19 27 Jan 2026 (Library: ...)``; the text if none."""
    found = re.search(r"\d+(\.\d+)+", text)
    return found.group(0) if found else text


def machine_line(doc: dict[str, Any]) -> str:
    m, v = doc["machine"], doc["versions"]
    names = {"openssl": "OpenSSL", "mkcert": "mkcert", "cfssl": "cfssl", "easyrsa": "easy-rsa"}
    peers = ", ".join(f"{name} {version_of(v[k])}" for k, name in names.items())
    return (
        f"Measured on {doc['started'][:10]}: {m['cpus']} cores ({m['cpu_model']}), Linux "
        f"{m['kernel']}, Python {m['python']}; load average {m['load_average_at_start']} "
        f"at the start, {m['load_average_1_5_15']} at the end; {v['certkit']}; {peers}. "
        f"Command: `{doc['command']}`."
    )


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
