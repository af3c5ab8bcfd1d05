"""The operator's status page `/admin`: HTML, its JSON and live SSE updates, behind the admin key.

`sessions` (the admin key, session cookies, login and its throttle), `page` (the page and its
JSON), `feed` (live updates), `actions` (sign-in, directory sync); `routes` lists them all and
`view` renders HTML from data.
"""
