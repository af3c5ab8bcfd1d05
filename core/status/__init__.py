"""What an operator sees, read from Redis and the settings: one module per view.

`system` is the whole bridge (accounts, subscriptions, users, queues, problems), `user` one
PBX user, `page` what the admin page adds to `system` (the user table, recent transitions).
Read-only and cheap: never Graph or a PBX, so the CLI and the admin page call them freely.
"""
