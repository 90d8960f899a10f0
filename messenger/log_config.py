"""One logging configuration for gunicorn's master and workers and for Django.

Every line carries the process id and the request's id (X-Request-ID, "-" outside a
request). LOG_FORMAT=json makes every line, gunicorn's own and the access log included,
one JSON object. This module imports nothing of Django or psycopg: gunicorn's master loads
it before the workers are forked and patched by gevent."""

import contextvars
import logging
import logging.config
import os
from datetime import UTC, datetime

import orjson

TEXT_FORMAT = "[%(asctime)s] [%(process)d] [%(levelname)s] %(name)s [%(request_id)s] %(message)s"
DATE_FORMAT = "%Y-%m-%d %H:%M:%S %z"
# gunicorn access log atoms (see gunicorn's access_log_format): remote address, request line,
# status, bytes, milliseconds, the request id the response carries, user agent.
ACCESS_FORMAT = '%(h)s "%(r)s" %(s)s %(b)s %(M)sms %({x-request-id}o)s "%(a)s"'
# JSON field name -> gunicorn access atom.
_ACCESS_FIELDS = {
    "remote": "h",
    "method": "m",
    "path": "U",
    "query": "q",
    "status": "s",
    "bytes": "B",
    "duration_ms": "M",
    "request_id": "{x-request-id}o",
    "user_agent": "a",
}

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")


class RequestIdFilter(logging.Filter):
    """Adds `request_id` to every record, so every formatter can name it.

    Django logs 4xx/5xx answers (logger django.request) after the middleware chain has
    returned and the context variable is reset: then the id is found on the request."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            request = getattr(record, "request", None)
            record.request_id = getattr(request, "request_id", None) or request_id_var.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line. Written here because it is a dozen lines and the project
    already depends on orjson; a JSON logging package would add a dependency for less."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "pid": record.process,
            "request_id": getattr(record, "request_id", "-"),
            "message": record.getMessage(),
        }
        if record.name == "gunicorn.access" and isinstance(record.args, dict):
            for field, atom in _ACCESS_FIELDS.items():
                value = record.args[atom]
                line[field] = value.replace('\\"', '"') if isinstance(value, str) else value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(line, default=str).decode()


def configure(config: dict) -> None:
    """Django's LOGGING_CONFIG: the dictConfig, and Python warnings (a library's
    UserWarning, a DeprecationWarning) as log records instead of bare lines on stderr."""
    logging.config.dictConfig(config)
    logging.captureWarnings(True)


def log_format() -> str:
    value = os.environ.get("LOG_FORMAT", "text").lower()
    if value not in ("text", "json"):
        raise ValueError(f"LOG_FORMAT must be text or json, not {value!r}")
    return value


def logging_config(level: str | None = None) -> dict:
    """The dictConfig of Django's LOGGING, and of gunicorn's logconfig_dict in JSON mode.

    Application records go to stderr: gunicorn's capture_output points stderr of a
    daemonized server at its log file, so they end up next to gunicorn's own lines."""
    level = (level or os.environ.get("LOG_LEVEL", "info")).upper()
    json_mode = log_format() == "json"
    formatter = (
        {"()": JsonFormatter} if json_mode else {"format": TEXT_FORMAT, "datefmt": DATE_FORMAT}
    )
    handler = {
        "class": "logging.StreamHandler",
        "formatter": "default",
        "filters": ["request_id"],
        "stream": "ext://sys.stderr",
    }
    config: dict = {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request_id": {"()": RequestIdFilter}},
        "formatters": {"default": formatter},
        "handlers": {"stderr": handler},
        "root": {"handlers": ["stderr"], "level": level},
        "loggers": {},
    }
    if json_mode:
        # gunicorn's own loggers, configured by this dict in JSON mode (logconfig_dict).
        config["loggers"]["gunicorn.error"] = {
            "handlers": ["stderr"],
            "level": level,
            "propagate": False,
        }
        access = os.environ.get("ACCESS_LOG") or None
        if access is not None:
            config["handlers"]["access"] = (
                {**handler, "stream": "ext://sys.stdout"}
                if access == "-"
                else {
                    "class": "logging.FileHandler",
                    "filename": access,
                    "formatter": "default",
                    "filters": ["request_id"],
                }
            )
        config["loggers"]["gunicorn.access"] = {
            "handlers": ["access"] if access else [],
            "level": "INFO" if access else "CRITICAL",
            "propagate": False,
        }
    return config
