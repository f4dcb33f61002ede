"""gunicorn's settings for GuestGate's web server (Dockerfile, docker-compose.yml, make bench).

    gunicorn guestgate.wsgi --config python:guestgate.gunicorn_config --bind 0.0.0.0:8000

Threads, not sync workers: every waiting guest's lobby and every open dashboard holds a long
poll (up to 20 s) on a thread, without a database connection (rooms/live.py). With 2 workers of
256 threads, 500 guests can wait at once (make bench's lobby benchmark measures this). More:
``WEB_CONCURRENCY=4`` (workers) or ``GUNICORN_CMD_ARGS="--threads 512"``.

No access log: gunicorn's would print invite links (/j/<token>); GuestGate logs requests
itself, with tokens redacted. gunicorn sets TCP_NODELAY on its sockets (Django's runserver
does not, which adds ~40 ms to answers on kept-alive connections: Nagle + delayed ACK).
"""

worker_class = "gthread"
threads = 256
timeout = 60  # a long poll answers after 20 s; a request stuck for 60 s is restarted
graceful_timeout = 25  # the long polls of a stopping worker end within 20 s
backlog = 2048  # 500 guests submitting the join form at once (make bench's burst)
accesslog = None
