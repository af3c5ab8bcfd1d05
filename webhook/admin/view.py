"""HTML of the status page from `core.status.page`'s model; every value goes through `esc`."""

from __future__ import annotations

import datetime as dt
import html
from collections.abc import Iterable
from importlib import resources
from string import Template
from typing import Any

_FILES = resources.files("webhook")
_TEMPLATE = Template(_FILES.joinpath("templates/admin.html").read_text("utf-8"))
_SCRIPT = _FILES.joinpath("static/admin.js").read_text("utf-8")
_ACCOUNT_CLASS = {"healthy": "ok", "needs_sign_in": "bad", "not_signed_in": "warn"}
_PRESENCE_CLASS = {
    "Available": "ok",
    "AvailableIdle": "ok",
    "Busy": "bad",
    "BusyIdle": "bad",
    "DoNotDisturb": "bad",
    "Away": "warn",
    "BeRightBack": "warn",
}


def esc(value: object) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def clock(ts: float | None) -> str:
    if not ts:
        return "—"
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def badge(text: str, cls: str) -> str:
    return f'<span class="badge {esc(cls)}">{esc(text)}</span>'


def document(title: str, main: str, nonce: str, *, live: bool, subtitle: str, nav: str) -> str:
    script = f'<script nonce="{nonce}">{_SCRIPT}</script>' if live else ""
    return _TEMPLATE.substitute(
        title=esc(title), nonce=nonce, main=main, script=script, subtitle=subtitle, nav=nav
    )


def login_form(error: str | None) -> str:
    problem = f'<p class="error" role="alert">{esc(error)}</p>' if error else ""
    return (
        '<form class="login" method="post" action="/admin/login">'
        "<h2>Status page</h2>"
        '<p class="muted">Sign in with the admin API key (PRESENCE_BRIDGE_ADMIN_API_KEY).</p>'
        f"{problem}"
        '<label for="key">Admin API key</label>'
        '<input id="key" name="key" type="password" autocomplete="current-password"'
        " required autofocus>"
        '<button type="submit">Sign in</button></form>'
    )


def closed_notice() -> str:
    return message("The status page is closed: set PRESENCE_BRIDGE_ADMIN_API_KEY to open it.")


def message(text: str, heading: str = "") -> str:
    back = '<p><a href="/admin">Back to the status page</a></p>'
    title = f"<h2>{esc(heading)}</h2>" if heading else ""
    return f'<div class="login">{title}<p>{esc(text)}</p>{back}</div>'


def _table(headers: Iterable[str], rows: list[list[str]], empty: str, cls: str = "") -> str:
    if not rows:
        return f'<p class="empty">{esc(empty)}</p>'
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _presence_cell(availability: str | None, activity: str | None) -> str:
    text = availability or "unknown"
    if activity and activity != availability:
        text += f" · {activity}"
    dot = _PRESENCE_CLASS.get(availability or "", "off")
    # No whitespace between the spans: the live script addresses them as first/last child.
    return f'<span class="dot {dot}"></span><span>{esc(text)}</span>'


# ---- the page -------------------------------------------------------------------------------


def status_main(data: dict[str, Any], form_token: str = "") -> str:
    """The page; `form_token` goes into every form it posts (webhook.admin.sessions)."""
    parts = [_overview(data)]
    if not data["tenants"]:
        parts.append(message("No tenants are configured (PRESENCE_BRIDGE_TENANTS_FILE)."))
    parts += [_tenant(t, form_token) for t in data["tenants"]]
    failed_jobs = [p for p in data["problems"] if p["source"] == "job"]
    if failed_jobs:
        parts.append(
            '<section class="tenant"><header><h2>Failed jobs</h2></header>'
            f'<div class="body">{_problems(failed_jobs)}</div></section>'
        )
    return "\n".join(parts)


def _overview(data: dict[str, Any]) -> str:
    def chip(value: object, label: str, cls: str = "") -> str:
        return f'<div class="chip {cls}"><b>{esc(value)}</b><span>{esc(label)}</span></div>'

    def alive(up: bool, label: str) -> str:
        return chip("up" if up else "down", label, "" if up else "bad")

    chips = [
        alive(data["worker_alive"], "worker"),
        alive(data["clock_alive"], "clock"),
        chip(data["intake_length"], "intake waiting"),
    ]
    chips += [chip(q["queued"], f"queue {q['name']}") for q in data["queues"]]
    failed = sum(q["failed"] for q in data["queues"])
    chips.append(chip(failed, "failed jobs", "bad" if failed else ""))
    chips.append(chip(len(data["problems"]), "problems", "bad" if data["problems"] else ""))
    return f'<div class="overview">{"".join(chips)}</div>'


def _tenant(t: dict[str, Any], form_token: str) -> str:
    u = t["users"]
    unlinked = t["user_count"] - t["linked_count"]
    counts = (
        f"{t['linked_count']} linked · {unlinked} unlinked · {u['conflicting']} conflicting"
        f" · {u['subscribed']} subscribed · {u['polled']} polled"
        f" · {t['pending_deliveries']} pending"
    )
    state = badge("enabled", "ok") if t["enabled"] else badge("disabled", "off")
    sections = [
        ("Service accounts", _accounts(t, form_token)),
        ("Subscriptions", _subscriptions(t)),
        (f"Users ({t['user_count']})", _users(t)),
        ("Recent transitions", _transitions(t)),
        ("Errors and dead letters", _problems(t["problems"])),
    ]
    body = "".join(f"<h3>{esc(title)}</h3>{html_}" for title, html_ in sections)
    return (
        f'<section class="tenant" data-tenant="{esc(t["name"])}"><header>'
        f"<h2>{esc(t['name'])}</h2>{badge(t['adapter'], 'off')}{state}"
        f'<span class="counts">{esc(counts)}</span></header>'
        f'<div class="body">{body}</div></section>'
    )


def _accounts(t: dict[str, Any], form_token: str) -> str:
    rows = []
    for a in t["accounts"]:
        label = {
            "healthy": "healthy",
            "needs_sign_in": "needs sign-in",
            "not_signed_in": "not signed in",
        }.get(a["status"], a["status"])
        button = "Sign in again" if a["status"] == "healthy" else "Sign in"
        form = (
            '<form class="inline" method="post" action="/admin/sign-in">'
            f'<input type="hidden" name="csrf" value="{esc(form_token)}">'
            f'<input type="hidden" name="tenant" value="{esc(t["name"])}">'
            f'<input type="hidden" name="account" value="{esc(a["account"])}">'
            f'<button type="submit">{esc(button)}</button></form>'
        )
        rows.append(
            [
                esc(a["account"]),
                badge(label, _ACCOUNT_CLASS.get(a["status"], "off")),
                esc(clock(a["last_refresh"])),
                esc(clock(a["refresh_token_expires_at"])),
                f'<span class="mono">{esc(a["subscription_id"] or "—")}</span>',
                f'<span class="muted">{esc(a["reason"] or "")}</span>',
                form,
            ]
        )
    return _table(
        ["Account", "Token", "Last refresh", "Refresh token lapses", "Subscription", "Reason", ""],
        rows,
        "No service accounts configured.",
    )


def _subscriptions(t: dict[str, Any]) -> str:
    rows = [
        [
            f'<span class="mono">{esc(s["subscription_id"])}</span>',
            esc(s["account"]),
            f'<span class="num">{esc(s["users"])}</span>',
            f'<span class="badge" data-expires="{esc(s["expires_at"])}">{esc(s["state"])}</span>',
            esc(clock(s["expires_at"])),
            esc(clock(s["renewed_at"])),
        ]
        for s in t["subscriptions"]
    ]
    return _table(
        ["Subscription", "Account", "Users", "Expires", "Expires at", "Renewed"],
        rows,
        "No subscriptions yet.",
    )


def _users(t: dict[str, Any]) -> str:
    if not t["user_rows"]:
        return '<p class="empty">No PBX users known yet.</p>'
    rows = []
    for r in t["user_rows"]:
        link = badge("linked", "ok") if r["graph_ids"] else badge("unlinked", "warn")
        pending = " " + badge("pending", "warn") if r["pending"] else ""
        rows.append(
            f'<tr data-tenant="{esc(t["name"])}" data-user="{esc(r["user"])}">'
            f"<td>{esc(r['user'])}</td><td>{esc(r['teams_user'] or '—')}</td><td>{link}</td>"
            f'<td class="presence">{_presence_cell(r["availability"], r["activity"])}</td>'
            f'<td><span class="profile">{esc(r["profile"] or "—")}</span>{pending}</td>'
            f'<td class="updated muted">{esc(clock(r["updated_at"]))}</td></tr>'
        )
    more = ""
    if t["user_count"] > len(rows):
        more = (
            f'<p class="muted">Showing {len(rows)} of {t["user_count"]}; '
            "`presence-bridge users show USER` shows any user.</p>"
        )
    head = "".join(
        f"<th>{h}</th>"
        for h in ("PBX user", "Teams user", "Link", "Teams presence", "PBX profile", "Updated")
    )
    return (
        f'<div class="users-wrap"><table class="users"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></div>{more}"
    )


def _transitions(t: dict[str, Any]) -> str:
    rows = []
    for e in t["transitions"]:
        teams = e.get("teams") or {}
        presence = teams.get("availability") or e.get("availability") or ""
        result = e.get("result", "")
        cls = {"applied": "ok", "dead-lettered": "bad"}.get(result, "off")
        ms = e.get("latency_ms")
        latency = f"{ms:.0f} ms" if isinstance(ms, int | float) else ""
        rows.append(
            [
                esc(clock(e.get("at"))),
                esc(e["user"]),
                esc(presence),
                esc(e.get("profile") or "—"),
                badge(result, cls),
                esc(latency),
            ]
        )
    return _table(
        ["Time", "PBX user", "Teams", "Profile", "Result", "Latency"], rows, "No transitions yet."
    )


def _problems(problems: list[dict[str, Any]]) -> str:
    rows = [
        [esc(clock(p["at"])), badge(p["source"], "bad"), esc(p["subject"]), esc(p["message"])]
        for p in problems
    ]
    return _table(["When", "Source", "Subject", "Message"], rows, "None: all healthy.")
