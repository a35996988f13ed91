"""``certkit metrics rules|dashboard``: alerts and a dashboard on certkit's metrics."""

from __future__ import annotations

import json
from typing import Any

import typer

from .output import JSON_OPTION, emit
from .root import app

metrics_app = typer.Typer(
    help=(
        "Prometheus alerting rules and a Grafana dashboard for the metrics of "
        "`certkit status --format prometheus` (node_exporter's textfile collector).\n\n"
        "Example: certkit metrics rules --out /etc/prometheus/rules/certkit.yml"
    ),
    no_args_is_help=True,
)
app.add_typer(metrics_app, name="metrics")

WARN_DAYS = typer.Option(
    30.0, "--warn-days", help="Warn when a certificate expires within this many days."
)
TEXTFILE = typer.Option(
    "certkit.prom", "--textfile", help="The name of the .prom file `status --out` writes."
)
OUT = typer.Option(None, "--out", help="Write this file atomically (0644) instead of stdout.")


def _write(out: str, text: str, what: str, json_out: bool, data: dict[str, Any]) -> None:
    from .. import files
    from ..errors import OperationError
    from ..metrics import check_out

    path = check_out(out)
    try:
        files.write_output_file(path, text, files.PUBLIC_FILE, force=True)
    except OSError as e:
        raise OperationError(f"cannot write {path}: {e.strerror}.") from None
    emit(json_out, {"ok": True, "out": str(path), **data}, [f"Wrote {what} to {path} (0644)."])


@metrics_app.command("rules")
def rules(
    warn_days: float = WARN_DAYS,
    pending: str = typer.Option(
        "15m", "--for", help="How long a condition holds before its alert fires (Prometheus)."
    ),
    rotation_days: float = typer.Option(
        14.0, "--rotation-days", help="Alert when a CA rotation is under way for longer."
    ),
    stale: str = typer.Option(
        "2h", "--stale-after", help="Alert when the textfile is older (the cron job stopped)."
    ),
    textfile: str = TEXTFILE,
    out: str = OUT,
    json_out: bool = JSON_OPTION,
) -> None:
    """Prometheus alerting rules: expiring, expired, renewal overdue, verify failing, rotation.

    Add the file to prometheus.yml's rule_files; check it with `promtool check rules FILE`.
    With --json and no --out, the rules come as one JSON document (Prometheus reads it too).

    Example: certkit metrics rules --warn-days 21 --out /etc/prometheus/rules/certkit.yml
    """
    from ..alerting import RuleSettings, alert_names, render_rules
    from ..alerting import rules as make_rules

    settings = RuleSettings(warn_days, pending, rotation_days, stale, textfile)
    data = make_rules(settings)
    if out is None:
        if json_out:
            typer.echo(json.dumps(data, indent=2))
        else:
            typer.echo(render_rules(data), nl=False)
        return
    names = alert_names(data)
    _write(out, render_rules(data), f"{len(names)} alerting rules", json_out, {"alerts": names})


@metrics_app.command("dashboard")
def dashboard(
    warn_days: float = WARN_DAYS,
    textfile: str = TEXTFILE,
    out: str = OUT,
    json_out: bool = JSON_OPTION,
) -> None:
    """A Grafana dashboard (JSON) of the same metrics: import it and pick the data source.

    The dashboard is JSON already: --json only changes what is printed after --out.

    Example: certkit metrics dashboard --out certkit-dashboard.json
    """
    from ..alerting import RuleSettings
    from ..dashboard import dashboard as make_dashboard

    RuleSettings(warn_days=warn_days, textfile=textfile).check()
    board = make_dashboard(warn_days, textfile)
    text = json.dumps(board, indent=2) + "\n"
    if out is None:
        typer.echo(text, nl=False)
        return
    titles = [p["title"] for p in board["panels"]]
    _write(out, text, f"a dashboard of {len(titles)} panels", json_out, {"panels": titles})
