"""Every route of the admin page, in one list."""

from __future__ import annotations

from starlette.routing import Route

from webhook.admin import actions, feed, page, sessions

routes = [
    Route("/admin", page.page_html, methods=["GET"]),
    Route("/admin/api/status", page.page_json, methods=["GET"]),
    Route("/admin/events", feed.events, methods=["GET"]),
    Route("/admin/login", sessions.login, methods=["POST"]),
    Route("/admin/logout", sessions.logout, methods=["GET"]),
    Route("/admin/sign-in", actions.sign_in, methods=["POST"]),
    Route("/admin/api/tenants/{tenant}/directory-sync", actions.directory_sync, methods=["POST"]),
]
