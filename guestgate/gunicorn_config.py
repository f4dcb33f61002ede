"""gunicorn's settings for GuestGate's web server (Dockerfile, docker-compose.yml, make bench).

    gunicorn guestgate.wsgi --config python:guestgate.gunicorn_config --bind 0.0.0.0:8000

Threads, not sync workers: every waiting guest's lobby and every open dashboard holds a long
poll (up to 20 s) on a thread, without a database connection (rooms/live.py). 2 workers of
512 threads let the 500 waiting guests of DESIGN's burst target wait at once with room to spare
(too few threads delay a moderator's decision for the lobbies queued behind them: the lobby
benchmark shows it). More: ``WEB_CONCURRENCY=4`` (workers) or
``GUNICORN_CMD_ARGS="--threads 1024"``.

No access log: gunicorn's would print invite links (/j/<token>); GuestGate logs requests
itself, with tokens redacted. gunicorn sets TCP_NODELAY on its sockets (Django's runserver
does not, which delays answers on kept-alive connections: Nagle + delayed ACK).
"""

worker_class = "gthread"
threads = 512
worker_connections = 2000  # open connections per worker: long polls and idle kept-alive ones
timeout = 60  # a long poll answers after 20 s; a request stuck for 60 s is restarted
graceful_timeout = 25  # the long polls of a stopping worker end within 20 s
backlog = 2048  # a burst of guests submitting the join form at once (DESIGN: 500)
# Idle kept-alive connections stay open longer than clients keep them (httpx 5 s, browsers and
# proxies up to 60 s), so the client closes first. With gunicorn's default of 2 s, a request
# sent on a connection gunicorn was just closing got no answer ("Server disconnected without
# sending a response"), which the burst benchmark saw for many join forms.
keepalive = 75
accesslog = None
