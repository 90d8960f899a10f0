"""Settings of the messenger project, read once from the environment.

Every address is configuration: the defaults describe the local cluster started by
`make up` (PgBouncer for shard i on 6430+i in front of a primary on 5440+i; the replica on
5450+i, read directly so that it stays readable when the primary's PgBouncer is gone); on real
hosts set SHARD_<i>_URL / SHARD_<i>_REPLICA_URL and DATABASE_URL instead.
Shards are named by their id in the variable, so the order of hosts never matters.
"""

from pathlib import Path

import environ
import orjson
from django.core.exceptions import ImproperlyConfigured

from messenger.log_config import logging_config

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()

# dev | test | production. Outside dev and test a SECRET_KEY must be given.
DJANGO_ENV = env.str("DJANGO_ENV", default="dev")
if DJANGO_ENV not in ("dev", "test", "production"):
    raise ImproperlyConfigured(f"DJANGO_ENV must be dev, test or production, not {DJANGO_ENV!r}")
PRODUCTION = DJANGO_ENV == "production"
DEBUG = env.bool("DEBUG", default=False)
if DJANGO_ENV in ("dev", "test"):
    SECRET_KEY = env.str("SECRET_KEY", default="dev-only-insecure-key-do-not-use-in-production")
else:
    SECRET_KEY = env.str("SECRET_KEY")
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=[] if PRODUCTION else ["*"])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "shards",
    "users",
    "resharding",
    "apikeys",
]

MIDDLEWARE = [
    # Outermost: it measures the answer as it leaves, whichever layer made it.
    "messenger.middleware.ContentLengthMiddleware",
    # Before the rest, so every answer and every log line of a request carries its
    # X-Request-ID.
    "messenger.request_id.RequestIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # Before anything reads the body or a database: a request waits here for its turn.
    "messenger.middleware.ConcurrencyLimitMiddleware",
    "messenger.middleware.BodySizeLimitMiddleware",
    "messenger.body_timeout.BodyReadTimeoutMiddleware",
    "messenger.middleware.ConsistencyTokenMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Sessions, CSRF, auth and messages only run for /admin/ (see messenger.middleware):
    # the API path carries none of them.
    "messenger.middleware.AdminOnlyMiddleware",
]

# --- HTTPS -------------------------------------------------------------------------------------
# Production runs behind a proxy that terminates TLS and says so in X-Forwarded-Proto (it must
# set that header and drop any a client sent). Plain HTTP is redirected to HTTPS, except the
# probes: load balancers and container health checks speak plain HTTP to the server itself.
if PRODUCTION:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = True
    SECURE_REDIRECT_EXEMPT = [r"^health$", r"^health/ready$"]
    SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31_536_000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
X_FRAME_OPTIONS = "DENY"

ROOT_URLCONF = "messenger.urls"
WSGI_APPLICATION = "messenger.wsgi.application"

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
            ],
        },
    },
]

# --- Databases -------------------------------------------------------------------------------
SHARDING_ENABLED = env.bool("SHARDING_ENABLED", default=True)
# With sharding off everything lives on shard 0: same code, one database.
SHARDING_COUNT = env.int("SHARDING_COUNT", default=5) if SHARDING_ENABLED else 1
SHARD_DB_NAME = env.str("SHARD_DB_NAME", default="messenger")
SHARD_DB_HOST = env.str("SHARD_DB_HOST", default="127.0.0.1")
PGBOUNCER_BASE_PORT = env.int("PGBOUNCER_BASE_PORT", default=6430)
# Replicas are read directly, not through the primary's PgBouncer (which may be the part
# that failed): shard i's replica listens on REPLICA_BASE_PORT+i.
REPLICA_BASE_PORT = env.int("REPLICA_BASE_PORT", default=5450)
# Resharding connects to primaries directly (logical replication, DDL, long scans do not go
# through PgBouncer): shard i's primary listens on PRIMARY_BASE_PORT+i unless
# SHARD_<i>_PRIMARY_URL names it.
PRIMARY_BASE_PORT = env.int("PRIMARY_BASE_PORT", default=5440)

# Time limits (shards/timeouts.py). A database call (waiting for a pooled connection,
# connecting, running its statements) that takes longer than DB_TIMEOUT seconds is abandoned,
# its connection discarded, and its shard answers 503: an unreachable shard costs its own
# requests DB_TIMEOUT once, then nothing (known down) until a probe sees it back.
DB_TIMEOUT = env.float("DB_TIMEOUT", default=2.0)
# Requests of one worker running at once (messenger.middleware.ConcurrencyLimitMiddleware),
# and how long one waits for its turn before 503 server_busy.
MAX_CONCURRENT_REQUESTS = env.int("MAX_CONCURRENT_REQUESTS", default=64)
REQUEST_QUEUE_TIMEOUT = env.float("REQUEST_QUEUE_TIMEOUT", default=10.0)
# The part of it a replica read may take before the read goes to the primary instead.
DB_REPLICA_TIMEOUT = env.float("DB_REPLICA_TIMEOUT", default=0.8)
# A health probe that gets no answer within this many seconds marks its database down.
DB_PROBE_TIMEOUT = env.float("DB_PROBE_TIMEOUT", default=0.8)
# libpq's connect_timeout (whole seconds, at least 2): what bounds a connect outside gevent.
DB_CONNECT_TIMEOUT = env.int("DB_CONNECT_TIMEOUT", default=2)
# Outside gevent (management commands, pool workers) the kernel bounds a dead peer: data or
# keepalive probes unacknowledged for this many seconds drop the connection.
DB_TCP_USER_TIMEOUT = env.float("DB_TCP_USER_TIMEOUT", default=5.0)
DB_TCP_OPTIONS = {
    "keepalives": 1,
    "keepalives_idle": 1,
    "keepalives_interval": 1,
    "keepalives_count": max(1, int(DB_TCP_USER_TIMEOUT)),
    "tcp_user_timeout": int(DB_TCP_USER_TIMEOUT * 1000),
}
# Connections each worker may hold per database alias (psycopg_pool through Django).
DB_POOL_SIZE = env.int("DB_POOL_SIZE", default=20)
DB_POOL_TIMEOUT = env.float("DB_POOL_TIMEOUT", default=10.0)


def _database(url: str) -> dict:
    config = env.db_url_config(url)
    config.update(
        {
            # Django's backend, naming host and port when a connect fails.
            "ENGINE": "messenger.postgresql",
            # PgBouncer in transaction mode: no server-side cursors, no session state,
            # no named prepared statements (Django's psycopg backend disables those by default).
            "DISABLE_SERVER_SIDE_CURSORS": True,
            "CONN_MAX_AGE": 0,
            "CONN_HEALTH_CHECKS": False,
            "TIME_ZONE": None,
            "OPTIONS": {
                "connect_timeout": DB_CONNECT_TIMEOUT,
                **DB_TCP_OPTIONS,
                "prepare_threshold": None,
                "pool": {
                    "min_size": 0,
                    "max_size": DB_POOL_SIZE,
                    "timeout": DB_POOL_TIMEOUT,
                    "max_idle": 60,
                },
            },
        }
    )
    return config


DATABASES = {
    "default": _database(
        env.str("DATABASE_URL", default="postgres://postgres@127.0.0.1:5439/control")
    ),
}
SHARD_PRIMARY_URLS: dict[int, dict] = {}
for _i in range(SHARDING_COUNT):
    _bouncer = f"postgres://postgres@{SHARD_DB_HOST}:{PGBOUNCER_BASE_PORT + _i}"
    _replica = f"postgres://postgres@{SHARD_DB_HOST}:{REPLICA_BASE_PORT + _i}"
    DATABASES[f"shard_{_i}"] = _database(
        env.str(f"SHARD_{_i}_URL", default=f"{_bouncer}/{SHARD_DB_NAME}")
    )
    DATABASES[f"shard_{_i}_replica"] = _database(
        env.str(f"SHARD_{_i}_REPLICA_URL", default=f"{_replica}/{SHARD_DB_NAME}")
    )
    SHARD_PRIMARY_URLS[_i] = env.db_url_config(
        env.str(
            f"SHARD_{_i}_PRIMARY_URL",
            default=f"postgres://postgres@{SHARD_DB_HOST}:{PRIMARY_BASE_PORT + _i}/{SHARD_DB_NAME}",
        )
    )
    DATABASES[f"shard_{_i}"]["TEST"] = {"NAME": f"{SHARD_DB_NAME}_test"}
    # The replica holds the primary's databases under the same names.
    DATABASES[f"shard_{_i}_replica"]["TEST"] = {"NAME": f"{SHARD_DB_NAME}_test"}
DATABASES["default"]["TEST"] = {"NAME": "control_test"}

DATABASE_ROUTERS = ["shards.router.ShardRouter"]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# How old a worker's copy of the slot map (in the control database) may get before it rereads it.
SLOT_MAP_REFRESH = env.float("SLOT_MAP_REFRESH", default=1.0)
# A write that meets a resharding fence waits for the new map and is retried on the new
# owner for at most this long (503 slot_moving after).
RESHARD_WRITE_WAIT = env.float("RESHARD_WRITE_WAIT", default=5.0)
# How long a move's write fence holds on its own: a reshard that dies before switching the
# map leaves no fence behind for longer than this. Renewed just before the switch.
RESHARD_FENCE_LEASE = env.float("RESHARD_FENCE_LEASE", default=15.0)
# Drills and tests: "<phase>=<seconds>" makes `manage.py reshard` wait that long right after
# entering the phase (copy: subscriptions created; cutover: fence in place), so that it can
# be interrupted there on purpose.
RESHARD_PAUSE = env.str("RESHARD_PAUSE", default="")
# Replica reads: a replica lagging more than this many seconds is skipped until it recovers.
REPLICA_MAX_LAG = env.float("REPLICA_MAX_LAG", default=5.0)
# How often each worker refreshes its view of every primary and replica.
REPLICA_CHECK_INTERVAL = env.float("REPLICA_CHECK_INTERVAL", default=1.0)
# A claim on an email whose user row never appeared is taken over after this many seconds.
EMAIL_CLAIM_TIMEOUT = env.float("EMAIL_CLAIM_TIMEOUT", default=30.0)
# Concurrent email changes of one user take turns; one waits at most this long (409 after).
USER_LOCK_TIMEOUT = env.float("USER_LOCK_TIMEOUT", default=5.0)
# Offset pagination reads offset+limit rows from every shard: deeper pages must use the cursor.
LIST_MAX_OFFSET = env.int("LIST_MAX_OFFSET", default=1000)
# Seconds a client is told to wait (Retry-After) when a shard is unavailable.
SHARD_RETRY_AFTER = env.int("SHARD_RETRY_AFTER", default=5)

# Requests with a larger body are refused with 413 before they are parsed.
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("MAX_BODY_BYTES", default=64 * 1024)
# Seconds a request body may take to arrive (then 408 and the connection closes).
REQUEST_BODY_TIMEOUT = env.float("REQUEST_BODY_TIMEOUT", default=10.0)

# --- API keys (apikeys/) ----------------------------------------------------------------------
# off: no key is asked for; required: every API call but /health, the schema and the docs page
# needs `Authorization: Bearer <key>`.
API_AUTH = env.str("API_AUTH", default="required" if PRODUCTION else "off")
if API_AUTH not in ("off", "required"):
    raise ImproperlyConfigured(f"API_AUTH must be off or required, not {API_AUTH!r}")
# Seconds a process trusts its last verdict on a key: also how long a revoked key still works.
API_KEY_CACHE_TTL = env.float("API_KEY_CACHE_TTL", default=30.0)
# Requests each key may make (DRF's rate format: `100/s`, `6000/min`); unset: no limit. The
# counts live in Redis so that every process shares them.
API_KEY_RATE = env.str("API_KEY_RATE", default="")
REDIS_URL = env.str("REDIS_URL", default="")
if API_KEY_RATE and not REDIS_URL:
    raise ImproperlyConfigured("API_KEY_RATE needs REDIS_URL: the counts are kept in Redis")
CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    # Rate limit counts (apikeys.throttling). A Redis that does not answer within 0.5 s
    # lets the request through.
    "throttle": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": "messenger",
        "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5},
    }
    if REDIS_URL
    else {"BACKEND": "django.core.cache.backends.dummy.DummyCache"},
    # Per process, so that checking a key seen lately costs no round trip to anything.
    "api_keys": {
        "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
        "LOCATION": "api-keys",
        "TIMEOUT": API_KEY_CACHE_TTL,
        "OPTIONS": {"MAX_ENTRIES": 10_000},
    },
}

# --- HTTP / DRF --------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_RENDERER_CLASSES": ["drf_orjson_renderer.renderers.ORJSONRenderer"],
    # UTC times end in Z, the API's format (users.serializers.user_representation).
    "ORJSON_RENDERER_OPTIONS": (orjson.OPT_UTC_Z,),
    "DEFAULT_PARSER_CLASSES": ["drf_orjson_renderer.parsers.ORJSONParser"],
    "DEFAULT_AUTHENTICATION_CLASSES": ["apikeys.authentication.ApiKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["apikeys.authentication.HasApiKey"],
    "DEFAULT_THROTTLE_CLASSES": ["apikeys.throttling.ApiKeyRateThrottle"],
    "UNAUTHENTICATED_USER": None,
    "DEFAULT_CONTENT_NEGOTIATION_CLASS": "messenger.negotiation.JSONOnlyNegotiation",
    "EXCEPTION_HANDLER": "messenger.errors.api_exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_VERSIONING_CLASS": None,
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Messenger users API",
    "DESCRIPTION": "Sharded users API: users spread over PostgreSQL shards by MD5 of their id.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = env.path("STATIC_ROOT", default=BASE_DIR / "var" / "static")
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = not PRODUCTION

# One configuration for Django and gunicorn (messenger.log_config): LOG_LEVEL, LOG_FORMAT.
LOGGING_CONFIG = "messenger.log_config.configure"
LOGGING = logging_config(env.str("LOG_LEVEL", default="INFO"))
# Sessions, auth, messages and CSRF run inside AdminOnlyMiddleware, where these checks do not
# look for them.
SILENCED_SYSTEM_CHECKS = ["admin.E408", "admin.E409", "admin.E410", "security.W003"]
