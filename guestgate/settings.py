"""GuestGate's one settings module, read from the environment.

Defaults need nothing installed: SQLite in ``var/``, an embedded Celery broker (files in
``var/``). The homeservers have no defaults here: ``python -m devtools`` (``make run``) and the
test suite fill them in from the local Synapse pair (``devtools.settings``, ``tests.settings``);
explicit variables override it. The README's configuration table lists every variable.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from urllib.parse import urlsplit

import dj_database_url

from guestgate.branding import branding_read
from guestgate.env import (
    ImproperlyConfiguredEnv,
    env_bool,
    env_int,
    env_list,
    env_secret,
    env_str,
    var_dir,
)

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = var_dir()

DEBUG = env_bool("GUESTGATE_DEBUG", False)
SECRET_KEY = env_secret("GUESTGATE_SECRET_KEY")
if not SECRET_KEY and DEBUG:
    SECRET_KEY = "insecure-dev-key-only-for-debug"
ALLOWED_HOSTS = env_list("GUESTGATE_ALLOWED_HOSTS", ["127.0.0.1", "localhost"])
# The address guests and moderators use, e.g. https://guests.example.org (links, QR codes).
PUBLIC_URL = env_str("GUESTGATE_PUBLIC_URL", "http://127.0.0.1:8000").rstrip("/")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "guestgate",
    "ops",
    "accounts",
    "rooms",
]

MIDDLEWARE = [
    "ops.requestid.RequestIdMiddleware",  # first: everything after logs under the id
    # The security headers, above WhiteNoise: it answers static files itself, and they get
    # them too.
    "django.middleware.security.SecurityMiddleware",
    "ops.security.ContentSecurityPolicyMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",  # Accept-Language, or the switch's cookie
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]

ROOT_URLCONF = "guestgate.urls"
WSGI_APPLICATION = "guestgate.wsgi.application"
ASGI_APPLICATION = "guestgate.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "guestgate.context_processors.branding",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL", f"sqlite:///{VAR_DIR / 'guestgate.sqlite3'}"),
        conn_max_age=env_int("GUESTGATE_DB_CONN_MAX_AGE", 0),
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Web, worker and beat share the file: wait for a lock instead of failing at once, and
    # take the write lock when a transaction begins (a read that later writes would otherwise
    # fail with "database is locked" when another process writes in between). WAL: readers
    # (long polls, the dashboard) never wait for a writer, and a commit costs a write to the
    # log instead of two fsyncs of the database file; synchronous=NORMAL is safe in WAL mode
    # (a power cut may lose the last commits, never corrupt the file).
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "timeout": 20,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL",
        }
    )
elif DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql" and (
    _pool_size := env_int("GUESTGATE_DB_POOL_SIZE", 10)
):
    # A pool per process (psycopg_pool): opening a PostgreSQL connection costs a few ms, once
    # per request or task without it. Waiting long polls hold none (rooms/live.py).
    DATABASES["default"]["CONN_MAX_AGE"] = 0  # the pool keeps connections instead
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": 1,
        "max_size": _pool_size,
        "timeout": 20,
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",  # admins (Django superusers)
    "rooms.moderators.MatrixModeratorBackend",  # moderators (Matrix accounts of main)
]
LOGIN_URL = "moderator-login"
# Moderator sign-in: wrong passwords for one account from one client address before that
# address waits (30 s, doubling with each further one, up to 30 minutes; other addresses,
# such as the owner's own, are not held back), and wrong passwords from one address for any
# accounts per 5 minutes (rooms.moderators).
SIGNIN_RATE_PER_ACCOUNT = env_int("GUESTGATE_SIGNIN_RATE_PER_ACCOUNT", 5)
SIGNIN_RATE_PER_IP = env_int("GUESTGATE_SIGNIN_RATE_PER_IP", 20)

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

LANGUAGE_CODE = "en"
LANGUAGES = [("en", "English"), ("de", "Deutsch")]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(env_str("GUESTGATE_STATIC_ROOT", str(BASE_DIR / "staticfiles")))

SESSION_COOKIE_SECURE = env_bool("GUESTGATE_SECURE_COOKIES", not DEBUG)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["rest_framework.authentication.SessionAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "guestgate.api.exception_handler",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "GuestGate API",
    "DESCRIPTION": "Moderate guests' requests to join calls. Same rights as the dashboard.",
    "VERSION": "1",
}

# Rate-limit counters (and other short-lived shared state): Redis when configured, else files.
_CACHE_REDIS = env_str("CACHE_URL", env_str("REDIS_URL"))
CACHES = {
    "default": (
        {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": _CACHE_REDIS}
        if _CACHE_REDIS
        else {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(VAR_DIR / "cache"),
        }
    )
}
# Join form: accepted joins per IP address, per invite link and per room, each per minute;
# and refused attempts (a name that is not allowed) per IP address per minute, counted apart.
JOIN_RATE_PER_IP = env_int("GUESTGATE_JOIN_RATE_PER_IP", 10)
JOIN_REJECTED_RATE_PER_IP = env_int("GUESTGATE_JOIN_REJECTED_RATE_PER_IP", 30)
JOIN_RATE_PER_LINK = env_int("GUESTGATE_JOIN_RATE_PER_LINK", 600)
JOIN_RATE_PER_ROOM = env_int("GUESTGATE_JOIN_RATE_PER_ROOM", 1200)

# --- Celery -------------------------------------------------------------------------------
# No broker URL: kombu's filesystem transport in var/, shared by web, worker and beat on one
# machine. Production and CI use Redis (CELERY_BROKER_URL=redis://...).
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", env_str("REDIS_URL", "filesystem://"))
CELERY_QUEUE_DIR = VAR_DIR / "celery-queue"
if CELERY_BROKER_URL.startswith("filesystem://"):
    # One folder that web, worker and beat share; the worker looks for messages in it every
    # polling_interval.
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(CELERY_QUEUE_DIR),
        "data_folder_out": str(CELERY_QUEUE_DIR),
        "processed_folder": str(CELERY_QUEUE_DIR / "processed"),
        "control_folder": str(CELERY_QUEUE_DIR / "control"),
        "polling_interval": 0.01,
        "store_processed": False,
    }
else:
    # Redis: a task not acknowledged within an hour goes back to the queue. That includes the
    # tasks a worker held when Redis restarted (their copy in Redis, kept by its append-only
    # file, waits that long): lower it to have them sooner, but keep it above the longest
    # countdown of a retry and the longest task, or they run twice.
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "visibility_timeout": env_int("GUESTGATE_BROKER_VISIBILITY_TIMEOUT", 3600),
        # Look for such tasks every sweep (about 10 s; kombu's default: every 10th), one cheap
        # sorted-set range query: they come back soon after their visibility timeout.
        "unacked_restore_throttle": 1,
    }
CELERY_BEAT_SCHEDULE_FILE = VAR_DIR / "celerybeat-schedule"

# --- Homeservers --------------------------------------------------------------------------


# The guest homeserver: where guest accounts live, through GuestGate's appservice there.
GUEST_HS_URL = env_str("GUEST_HS_URL").rstrip("/")
GUEST_HS_SERVER_NAME = env_str("GUEST_HS_SERVER_NAME")
GUEST_HS_PUBLIC_URL = (env_str("GUEST_HS_PUBLIC_URL") or GUEST_HS_URL).rstrip("/")
GUEST_AS_TOKEN = env_secret("GUEST_AS_TOKEN")
# Optional: a Synapse admin's token on the guest homeserver, for reconciliation only.
GUEST_ADMIN_TOKEN = env_secret("GUEST_ADMIN_TOKEN")
# …or a file read when reconciliation runs (the local pair's admin, made when the pair starts).
GUEST_ADMIN_TOKEN_FILE = ""
GUEST_USER_PREFIX = env_str("GUEST_USER_PREFIX") or "guest_"
# Lifetimes, return window and display-name suffix live in retention policies (Django admin).
# Expiry: accounts claimed by a sweep but not finished after this long are tried again.
EXPIRY_STUCK_AFTER_SECONDS = env_int("GUESTGATE_EXPIRY_STUCK_AFTER_SECONDS", 300)
# Accounts a task expires one after another. Small, so that the sweep's last round still keeps
# every worker thread busy (large batches leave threads idle while a few finish theirs).
EXPIRY_BATCH_SIZE = env_int("GUESTGATE_EXPIRY_BATCH_SIZE", 10)
EXPIRY_SWEEP_LIMIT = env_int("GUESTGATE_EXPIRY_SWEEP_LIMIT", 50_000)  # accounts claimed a sweep
# Each Celery worker says it is alive this often (ops/workers.py); one silent for three times
# as long is taken for dead by /healthz, the doctor and the lobby.
WORKER_HEARTBEAT_SECONDS = env_int("GUESTGATE_WORKER_HEARTBEAT_SECONDS", 10)
# Spare accounts: registered and logged in ahead of time, so an arriving guest waits only for
# the display name and the knock (accounts/spares.py). 0 turns them off.
GUEST_SPARE_ACCOUNTS = env_int("GUESTGATE_SPARE_ACCOUNTS", 5)
# Reconciliation: an account on the guest homeserver unknown to GuestGate is deactivated
# once it is older than this (a registration may be under way when it is listed).
RECONCILE_GRACE_SECONDS = env_int("GUESTGATE_RECONCILE_GRACE_SECONDS", 3600)
# The "open the call" button; {room_id}, {via} and {homeserver} are filled in (URL-encoded).
CALL_URL_TEMPLATE = env_str(
    "GUESTGATE_CALL_URL_TEMPLATE",
    "https://call.element.io/room/#/?roomId={room_id}&viaServers={via}&homeserver={homeserver}",
)

# The call's focus (MatrixRTC): the LiveKit JWT services Element Call may use, in order of
# preference (CALL-LAB §5: EC 0.26 asks its host, not .well-known). Each becomes one
# ``{"type": "livekit", "livekit_service_url": ...}`` transport the lobby gives the call.
RTC_TRANSPORTS = [
    {"type": "livekit", "livekit_service_url": url.rstrip("/")}
    for url in env_list("GUESTGATE_LIVEKIT_SERVICE_URLS", [])
]

# The call in the lobby. ``embedded``: Element Call's embedded build, served by GuestGate under
# /call/ and hosted by the lobby as a widget (DESIGN "The call"); ``link``: the lobby offers
# CALL_URL_TEMPLATE and the session hand-over only. Embedded by default when the front end is
# built (``make``, which needs npm: frontend/build.mjs writes FRONTEND_BUILD_DIR).
FRONTEND_BUILD_DIR = Path(env_str("GUESTGATE_FRONTEND_BUILD_DIR", str(BASE_DIR / "build")))
CALL_BUILD_DIR = FRONTEND_BUILD_DIR / "root" / "call"
_FRONTEND_BUILT = (CALL_BUILD_DIR / "index.html").exists() and (
    FRONTEND_BUILD_DIR / "static" / "guestgate" / "call-host.js"
).exists()
CALL_MODE = env_str("GUESTGATE_CALL_MODE", "embedded" if _FRONTEND_BUILT else "link")
if CALL_MODE not in ("embedded", "link"):
    raise ImproperlyConfiguredEnv(f"GUESTGATE_CALL_MODE={CALL_MODE!r}: use embedded or link")
if CALL_MODE == "embedded" and not _FRONTEND_BUILT:
    raise ImproperlyConfiguredEnv(
        f"GUESTGATE_CALL_MODE=embedded, but {FRONTEND_BUILD_DIR} has no front end: "
        "install Node.js 20 and npm, then run `make frontend`"
    )
if _FRONTEND_BUILT:
    STATICFILES_DIRS.append(FRONTEND_BUILD_DIR / "static")
    # WhiteNoise serves build/root at the site's root: Element Call at /call/, its hashed
    # assets and the call host's chunks and crypto WebAssembly (hashed names) cached for a
    # year, precompressed (.gz/.br next to each file).
    WHITENOISE_ROOT = FRONTEND_BUILD_DIR / "root"
    WHITENOISE_IMMUTABLE_FILE_TEST = r"^/call/assets/|^/static/guestgate/call-host/"
# Element Call's origin: empty for GuestGate's own (ops/security.py gives /call/ its policy),
# or e.g. https://call.guests.example.org, a name for the same GuestGate (or a copy of
# build/root): EC then cannot read the lobby's storage (CALL-LAB §10; README "How it works").
CALL_ORIGIN = env_str("GUESTGATE_CALL_ORIGIN", "").rstrip("/")
CALL_INDEX_URL = f"{CALL_ORIGIN}/call/index.html"
# The LiveKit servers the call connects to (wss://… and https://…), for /call/'s CSP: the JWT
# service hands them out, so they cannot be learnt in advance.
LIVEKIT_URLS = [url.rstrip("/") for url in env_list("GUESTGATE_LIVEKIT_URLS", [])]

# The main homeserver: where the call rooms are, with GuestGate's bot (appservice sender).
MAIN_HS_URL = env_str("MAIN_HS_URL").rstrip("/")
MAIN_HS_SERVER_NAME = env_str("MAIN_HS_SERVER_NAME")
MAIN_AS_TOKEN = env_secret("MAIN_AS_TOKEN")
MAIN_HS_TOKEN = env_secret("MAIN_HS_TOKEN")
MAIN_BOT_LOCALPART = env_str("MAIN_BOT_LOCALPART") or "guestgate"
# The `id` of GuestGate's appservice registration on main (the appservice ping API needs it).
MAIN_APPSERVICE_ID = env_str("MAIN_APPSERVICE_ID", "guestgate-main")

# Who may create call rooms from the dashboard (GuestGate's bot makes them on main): Matrix ids
# ("@ann:example.org") and server suffixes (":example.org"), comma-separated; empty: nobody.
# Default: every user of the main homeserver. (README "Creating a call room".)
ROOM_CREATORS = env_list("GUESTGATE_ROOM_CREATORS", [f":{MAIN_HS_SERVER_NAME}"])
for _creator in ROOM_CREATORS:
    if not (_creator.startswith("@") and ":" in _creator) and not _creator.startswith(":"):
        raise ImproperlyConfiguredEnv(
            f"GUESTGATE_ROOM_CREATORS: {_creator!r} is neither a Matrix id (@user:server) "
            "nor a server suffix (:server)"
        )

# Fernet keys for guest access tokens at rest (newest first); derived from SECRET_KEY if unset.
GUESTGATE_TOKEN_KEYS = env_list("GUESTGATE_TOKEN_KEYS", [])

MATRIX_TIMEOUT_SECONDS = float(env_str("MATRIX_TIMEOUT_SECONDS", "10"))
MATRIX_RETRIES = env_int("MATRIX_RETRIES", 2)

# --- Operations: health, metrics, logs, security headers (README "Operations") -----------
# /healthz fails its push check when the main homeserver has pushed nothing for this long
# (never having pushed is fine: a new installation).
HEALTH_PUSH_STALE_SECONDS = env_int("GUESTGATE_HEALTH_PUSH_STALE_SECONDS", 86400)
# /metrics answers clients at these addresses or networks (ops.clientaddress: direct, or
# through a trusted proxy),
# and anyone with the token (Authorization: Bearer); everyone else gets a 404.
METRICS_TOKEN = env_secret("GUESTGATE_METRICS_TOKEN")
try:
    METRICS_ALLOWED_NETWORKS = [
        ipaddress.ip_network(item, strict=False)
        for item in env_list("GUESTGATE_METRICS_ALLOWED_IPS", ["127.0.0.1", "::1"])
    ]
except ValueError as exc:
    raise ImproperlyConfiguredEnv(f"GUESTGATE_METRICS_ALLOWED_IPS: {exc}") from None

# Reverse proxies in front of GuestGate (addresses or networks, e.g. 127.0.0.1 or 172.16.0.0/12):
# only from these is X-Forwarded-For believed; the client is its rightmost address that is
# not one of them (ops.clientaddress). Rate limits and /metrics access use that address.
try:
    TRUSTED_PROXIES = [
        ipaddress.ip_network(item, strict=False)
        for item in env_list("GUESTGATE_TRUSTED_PROXIES", [])
    ]
except ValueError as exc:
    raise ImproperlyConfiguredEnv(f"GUESTGATE_TRUSTED_PROXIES: {exc}") from None

# Logs: one line per record, JSON for log collectors or plain for a terminal, each with the
# request id (ops.requestid) and without tokens or invite links (ops.logs).
LOG_FORMAT = env_str("GUESTGATE_LOG_FORMAT", "plain" if DEBUG else "json")
if LOG_FORMAT not in ("plain", "json"):
    raise ImproperlyConfiguredEnv(f"GUESTGATE_LOG_FORMAT={LOG_FORMAT!r}: use json or plain")
_LOG_LEVEL = env_str("GUESTGATE_LOG_LEVEL", "INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "request_id": {"()": "ops.requestid.RequestIdFilter"},
        "redact": {"()": "ops.logs.RedactSecretsFilter"},
    },
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"},
        "json": {"()": "ops.logs.JsonFormatter"},
    },
    # On the handler, so the filters see every record written, from any logger.
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": LOG_FORMAT,
            "filters": ["request_id", "redact"],
        }
    },
    "root": {"handlers": ["console"], "level": _LOG_LEVEL},
    "loggers": {
        # Without Django's default handlers here (a console handler of its own in debug, mail
        # to ADMINS, which is empty): its records go through ours once, formatted and cleaned.
        "django": {"level": _LOG_LEVEL},
        # httpx logs every request line with its URL; ours say what matters without secrets.
        "httpx": {"level": "WARNING"},
        "httpcore": {"level": "WARNING"},
        # runserver's access log (it has a handler of its own otherwise): same format, and
        # invite links in request lines ("POST /j/<token>") redacted.
        "django.server": {"handlers": ["console"], "level": _LOG_LEVEL, "propagate": False},
    },
}

# HTTPS. Behind a TLS-terminating proxy, set GUESTGATE_BEHIND_TLS_PROXY=true (it must set
# X-Forwarded-Proto and strip it from clients). HSTS is off until set: read Django's advice.
SECURE_PROXY_SSL_HEADER = (
    ("HTTP_X_FORWARDED_PROTO", "https") if env_bool("GUESTGATE_BEHIND_TLS_PROXY", False) else None
)
SECURE_SSL_REDIRECT = env_bool("GUESTGATE_SSL_REDIRECT", False)
# Not redirected: probes and scrapers on the inside network, and the main homeserver's
# pushes (Synapse does not follow redirects; its registration may say http://guestgate:8000).
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^metrics$", r"^_matrix/"]
SECURE_HSTS_SECONDS = env_int("GUESTGATE_HSTS_SECONDS", 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("GUESTGATE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = env_bool("GUESTGATE_HSTS_PRELOAD", False)
SESSION_COOKIE_HTTPONLY = True
CSRF_TRUSTED_ORIGINS = ["{0.scheme}://{0.netloc}".format(urlsplit(PUBLIC_URL))]
# Invite links carry their token in the path: never send them to another site as a Referer.
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# The organisation's name, logo and accent colour (guestgate/branding.py): a value it cannot
# use stops start-up here, saying which variable is wrong.
BRANDING = branding_read(
    name=env_str("GUESTGATE_ORG_NAME"),
    logo=env_str("GUESTGATE_ORG_LOGO_URL", "guestgate/logo.svg"),
    accent=env_str("GUESTGATE_ACCENT_COLOR"),
)

# ops.security.ContentSecurityPolicyMiddleware: no inline scripts or styles anywhere. A logo
# on another site is the one image from elsewhere.
_IMAGE_SOURCES = " ".join(filter(None, ["'self'", "data:", BRANDING.logo_origin]))
CONTENT_SECURITY_POLICY = (
    f"default-src 'self'; img-src {_IMAGE_SOURCES}; style-src 'self'; script-src 'self'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
