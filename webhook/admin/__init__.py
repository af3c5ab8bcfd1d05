"""The operator's status page `/admin`: HTML, its JSON and live SSE updates, behind the admin key.

`sessions` (the admin key, session cookies, login; the key's throttle is `webhook.auth`'s),
`page` (the page and its JSON), `feed` (live updates), `actions` (sign-in, directory sync);
`routes` lists them all and `view` renders HTML from data.
"""
