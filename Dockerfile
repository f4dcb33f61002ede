# The front end: Element Call's embedded build and the lobby's call host (frontend/).
FROM node:20-slim AS frontend
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund --loglevel=error
COPY frontend frontend
RUN npm run --silent build

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY guestgate guestgate
COPY matrix matrix
COPY ops ops
COPY accounts accounts
COPY rooms rooms
COPY templates templates
COPY static static
COPY locale locale
COPY manage.py ./
COPY --from=frontend /src/build build
RUN pip install --no-cache-dir . && python -m whitenoise.compress --quiet build
RUN GUESTGATE_DEBUG=true python manage.py collectstatic --noinput --skip-checks
EXPOSE 8000
# Threads (guestgate/gunicorn_config.py): lobbies and dashboards hold a long poll open.
# Static files: WhiteNoise.
CMD ["gunicorn", "guestgate.wsgi", "--config", "python:guestgate.gunicorn_config", \
     "--bind", "0.0.0.0:8000", "--workers", "2"]
