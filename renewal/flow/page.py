"""The status page (the status page HTTP trigger): the status report, for a person in a browser.

One static HTML document, rendered on the server from ``renewal.flow.report.status_report`` (the data the status
JSON and the CLI show): the fleet's counts, certificates by expiry on an SVG timeline, what is at risk, failures
and dead letters with their reasons, and the next renewals. It loads nothing from anywhere (inline CSS and SVG, no
script, no font), so it works in a locked-down network, and its Content-Security-Policy forbids anything else.
Every value is escaped: certificate names, tags and messages come from outside.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from renewal.errors import RenewalError, RetryableError

__all__ = ["render_status_page", "status_page"]

# The timeline's states, their colours and legend words (FleetCertificate.state).
_STATES = {
    "expired": ("#8b0000", "expired"),
    "failing": ("#d62728", "renewal failing"),
    "at_risk": ("#ff7f0e", "at risk"),
    "renewing": ("#1f77b4", "renewing"),
    "due": ("#17becf", "due (window open)"),
    "ok": ("#2ca02c", "ok"),
    "paused": ("#9467bd", "paused"),
    "not_managed": ("#7f7f7f", "not managed"),
}
_NEXT_RENEWALS = 20
_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'"
_STYLE = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;background:#f6f7f9;color:#1b1f24}
header{background:#1b1f24;color:#fff;padding:14px 24px}header h1{font-size:20px;margin:0}
header p{margin:2px 0 0;color:#c9d1d9;font-size:13px}main{padding:16px 24px;max-width:1240px}
section{background:#fff;border:1px solid #d8dee4;border-radius:6px;margin:0 0 16px;padding:12px 16px}
h2{font-size:16px;margin:0 0 8px}.cards{display:flex;flex-wrap:wrap;gap:10px;margin:0 0 16px;padding:0}
.card{list-style:none;background:#fff;border:1px solid #d8dee4;border-radius:6px;padding:8px 14px;min-width:110px}
.card b{display:block;font-size:26px}.card.bad{border-color:#d62728;background:#fff5f5}.card.bad b{color:#d62728}
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:4px 8px;border-bottom:1px solid #eaeef2;
vertical-align:top}th{background:#f6f8fa;font-weight:600}td.msg{max-width:520px;overflow-wrap:anywhere}
.none{color:#57606a;margin:0}.legend{display:flex;flex-wrap:wrap;gap:12px;margin:6px 0 0;padding:0}
.legend li{list-style:none}.swatch{display:inline-block;width:10px;height:10px;border-radius:5px;margin-right:4px}
code{font-size:12px}
"""


def status_page() -> tuple[int, str]:
    """HTTP status and HTML of the status page: 200, or 503 (retry later) / 500 when the report cannot be made."""
    from renewal.flow.entry import current_runtime
    from renewal.flow.report import status_report

    try:
        report = status_report(current_runtime())
    except RenewalError as exc:
        code = 503 if isinstance(exc, RetryableError) else 500
        return code, _document(
            "renewal status",
            f"<main><section><h2>The status cannot be shown</h2><p>{_e(exc.reason)}</p></section></main>",
        )
    return 200, render_status_page(report)


def render_status_page(report: Mapping[str, Any]) -> str:
    """The page for one status report (``renewal.flow.report.status_report``'s dict)."""
    summary = report["summary"]
    generated = str(report["generated_at"])
    body = [
        f'<header><h1>Key Vault certificate renewal</h1><p>Status at <time datetime="{_e(generated)}">'
        f"{_e(_short(generated))} UTC</time></p></header><main>",
        _cards(summary),
        _list_errors(report.get("list_errors") or ()),
        _timeline(report),
        _at_risk(report.get("at_risk") or ()),
        _failures(report.get("failures") or ()),
        _dead_letters(report.get("dead_letters") or ()),
        _rollouts(report.get("rollouts") or ()),
        _next_renewals(report.get("next_renewals") or ()),
        "</main>",
    ]
    return _document("renewal status", "".join(body))


def _document(title: str, body: str) -> str:
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<meta name="referrer" content="no-referrer"><title>{_e(title)}</title><style>{_STYLE}</style></head>'
        f"<body>{body}</body></html>"
    )


def _e(value: object) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _short(moment: str | None) -> str:
    return moment[:16].replace("T", " ") if moment else "-"


def _cards(summary: Mapping[str, Any]) -> str:
    cards = [
        ("certificates", "certificates", False),
        ("managed", "managed", False),
        ("renewing", "renewing", False),
        ("failing", "failing", True),
        ("at_risk", "at risk", True),
        ("paused", "paused", False),
        ("dead_letters", "dead letters", True),
    ]
    items = []
    for key, label, alarming in cards:
        count = int(summary.get(key) or 0)
        bad = " bad" if alarming and count else ""
        items.append(f'<li class="card{bad}" id="count-{key}"><b>{count}</b>{_e(label)}</li>')
    return f'<ul class="cards" aria-label="fleet summary">{"".join(items)}</ul>'


def _table(section_id: str, title: str, headings: Sequence[str], rows: Sequence[Sequence[object]], empty: str) -> str:
    if not rows:
        return f'<section id="{section_id}"><h2>{_e(title)}</h2><p class="none">{_e(empty)}</p></section>'
    head = "".join(f"<th>{_e(h)}</th>" for h in headings)
    lines = []
    for row in rows:
        cells = "".join(
            f'<td class="msg">{_e(cell)}</td>' if i == len(row) - 1 else f"<td>{_e(cell)}</td>"
            for i, cell in enumerate(row)
        )
        lines.append(f"<tr>{cells}</tr>")
    return (
        f'<section id="{section_id}"><h2>{_e(title)} ({len(rows)})</h2><table><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(lines)}</tbody></table></section>"
    )


def _list_errors(errors: Sequence[str]) -> str:
    if not errors:
        return ""
    items = "".join(f"<li>{_e(error)}</li>" for error in errors)
    return f'<section id="list-errors"><h2>Vaults that could not be listed</h2><ul>{items}</ul></section>'


def _at_risk(rows: Sequence[Mapping[str, Any]]) -> str:
    return _table(
        "at-risk",
        "At risk",
        ("vault", "certificate", "expires", "reason", "why"),
        [(r["vault"], r["certificate"], _short(r["expires_on"]), r["reason"], r["message"]) for r in rows],
        "Nothing is at risk.",
    )


def _failures(rows: Sequence[Mapping[str, Any]]) -> str:
    return _table(
        "failures",
        "Failures",
        ("vault", "certificate", "step", "attempts", "next attempt", "reason", "message"),
        [
            (
                r["vault"],
                r["certificate"],
                r["step"],
                r["attempts"],
                _short(r["next_attempt_at"]) if r["next_attempt_at"] else "none (needs a person)",
                (r.get("last_outcome") or {}).get("reason") or r["last_reason"],
                (r.get("last_outcome") or {}).get("message") or r["last_error"],
            )
            for r in rows
        ],
        "No renewal is failing.",
    )


def _dead_letters(rows: Sequence[Mapping[str, Any]]) -> str:
    return _table(
        "dead-letters",
        "Dead letters",
        ("endpoint", "vault", "certificate", "webhook id", "attempts", "queued", "last error"),
        [
            (
                r["endpoint"],
                r["vault"],
                r["certificate"],
                r["webhook_id"],
                r["attempts"],
                _short(r["created_at"]),
                r["last_error"],
            )
            for r in rows
        ],
        "No delivery was given up on.",
    )


def _rollouts(rows: Sequence[Mapping[str, Any]]) -> str:
    if not rows:
        # No deployment target configured, or nothing pushed yet: the section would only say so.
        return ""
    return _table(
        "rollouts",
        "Rollouts to deployment targets",
        ("vault", "certificate", "target", "version", "state", "pushed", "deadline", "probe"),
        [
            (
                r["vault"],
                r["certificate"],
                r["target"],
                r["version"],
                r["state"],
                _short(r["pushed_at"]),
                _short(r["deadline"]),
                r["probe"] or "-",
            )
            for r in rows
        ],
        "",
    )


def _next_renewals(rows: Sequence[Mapping[str, Any]]) -> str:
    shown = rows[:_NEXT_RENEWALS]
    title = "Next renewals" if len(rows) <= _NEXT_RENEWALS else f"Next renewals, the first {_NEXT_RENEWALS} of"
    return _table(
        "next-renewals",
        title,
        ("renews from", "vault", "certificate", "expires"),
        [(_short(r["renews_from"]), r["vault"], r["certificate"], _short(r["expires_on"])) for r in shown],
        "No managed certificate has a renewal window.",
    )


def _timeline(report: Mapping[str, Any]) -> str:
    """Certificates by expiry: weekly counts as bars over the next 26 weeks, and the soonest certificates as dots
    coloured by state (each with its name in a tooltip)."""
    weekly = report["expiry_by_week"]
    weeks: list[int] = list(weekly["weeks"])
    start = datetime.fromisoformat(weekly["starting"])
    width, height, left, top, bottom = 1180, 250, 90, 16, 190
    span = len(weeks) * 7 * 86400
    plot = width - left - 20
    tallest = max([*weeks, weekly["expired"], 1])

    def x_of(moment: datetime) -> float:
        return left + plot * min(max((moment - start).total_seconds() / span, 0.0), 1.0)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" aria-labelledby="timeline-title" '
        f'viewBox="0 0 {width} {height}" width="100%" id="timeline">',
        '<title id="timeline-title">Certificates by expiry over the next 26 weeks</title>',
        f'<line x1="{left}" y1="{bottom}" x2="{width - 20}" y2="{bottom}" stroke="#57606a"/>',
    ]
    bar = plot / len(weeks)
    for index, count in enumerate(weeks):
        if count:
            h = (bottom - top - 60) * count / tallest
            x = left + index * bar
            parts.append(
                f'<rect class="week" x="{x + 1:.1f}" y="{bottom - h:.1f}" width="{bar - 2:.1f}" '
                f'height="{h:.1f}" fill="#d0d7de"><title>{count} expiring in week {index + 1}</title></rect>'
            )
    expired = int(weekly["expired"])
    parts.append(
        f'<text x="10" y="{bottom - 4}" font-size="12" fill="#8b0000">expired: {expired}</text>'
        f'<text x="10" y="{bottom + 16}" font-size="12" fill="#57606a">later: {int(weekly["later"])}</text>'
    )
    for month in range(0, len(weeks) + 1, 4):
        moment = start + timedelta(weeks=month)
        x = x_of(moment)
        parts.append(
            f'<line x1="{x:.1f}" y1="{bottom}" x2="{x:.1f}" y2="{bottom + 5}" stroke="#57606a"/>'
            f'<text x="{x:.1f}" y="{bottom + 20}" font-size="12" text-anchor="middle" fill="#57606a">'
            f"{_e(moment.strftime('%d %b'))}</text>"
        )
    lanes = 6
    end = start + timedelta(seconds=span)
    # Beyond the last week a certificate is only counted ("later"): a dot pinned to the edge would misplace it.
    drawn = [e for e in report.get("expiring") or () if datetime.fromisoformat(e["expires_on"]) <= end]
    for index, entry in enumerate(drawn):
        expires = datetime.fromisoformat(entry["expires_on"])
        colour, label = _STATES.get(entry["state"], _STATES["ok"])
        x = x_of(expires) if expires > start else left - 12
        y = top + 10 + (index % lanes) * 8
        tip = f"{entry['vault']}/{entry['certificate']}: expires {_short(entry['expires_on'])} ({label})"
        parts.append(
            f'<circle class="cert state-{_e(entry["state"])}" cx="{x:.1f}" cy="{y}" r="4" fill="{colour}">'
            f"<title>{_e(tip)}</title></circle>"
        )
    parts.append("</svg>")
    legend = "".join(
        f'<li><span class="swatch" style="background:{colour}"></span>{_e(label)}</li>'
        for colour, label in _STATES.values()
    )
    shown = len(drawn)
    return (
        f'<section id="expiry"><h2>Certificates by expiry</h2>{"".join(parts)}<ul class="legend">{legend}</ul>'
        f'<p class="none">Bars: certificates expiring each week. Dots: the {shown} soonest inside the 26 weeks, '
        "by state.</p></section>"
    )
