"""gunicorn's settings for GuestGate's web server (Dockerfile, docker-compose.yml, make bench).

    gunicorn guestgate.wsgi --config python:guestgate.gunicorn_config --bind 0.0.0.0:8000

Threads, not sync workers: every waiting guest's lobby and every open dashboard holds a long
poll (up to 20 s) on a thread, without a database connection (rooms/live.py). With 2 workers of
512 threads, 500 guests can wait at once with room to spare (make bench's lobby benchmark:
with 256 threads each, 500 waiting lobbies left too few threads and a moderator's decision
took up to 17 s to reach some of them). More: ``WEB_CONCURRENCY=4`` (workers) or
``GUNICORN_CMD_ARGS="--threads 1024"``; a thread waiting on a long poll costs ~165 KiB.

No access log: gunicorn's would print invite links (/j/<token>); GuestGate logs requests
itself, with tokens redacted. gunicorn sets TCP_NODELAY on its sockets (Django's runserver
does not, which adds ~40 ms to answers on kept-alive connections: Nagle + delayed ACK).
"""

worker_class = "gthread"
threads = 512
worker_connections = 2000  # open connections per worker: long polls and idle kept-alive ones
timeout = 60  # a long poll answers after 20 s; a request stuck for 60 s is restarted
graceful_timeout = 25  # the long polls of a stopping worker end within 20 s
backlog = 2048  # 500 guests submitting the join form at once (make bench's burst)
# Idle kept-alive connections stay open longer than clients keep them (httpx 5 s, browsers and
# proxies up to 60 s), so the client closes first. With gunicorn's 2 s, a guest's request sent
# on a connection gunicorn was just closing got no answer: 212 of 500 join forms in a burst
# (make bench) failed with "Server disconnected without sending a response".
keepalive = 75
accesslog = None
