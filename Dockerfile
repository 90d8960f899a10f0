# The API server image (docker-compose.yml: messenger_server). Runtime dependencies only, from
# the exact pins of requirements.lock (the test and lint tools are in requirements-dev.lock);
# gunicorn's settings (gevent workers, bind, keep-alive) live in messenger/gunicorn.conf.py.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DJANGO_ENV=production \
    HOST=0.0.0.0 \
    PORT=8080

WORKDIR /app

# Dependencies first: this layer is rebuilt only when requirements.lock changes.
COPY requirements.lock .
RUN pip install -r requirements.lock

COPY . .
# Admin and API-docs assets, served by WhiteNoise in production mode.
RUN DJANGO_ENV=dev python manage.py collectstatic --noinput

RUN useradd --system --uid 10001 --no-create-home app
USER app

EXPOSE 8080
# Readiness (every shard and the control database), over plain HTTP like any probe.
HEALTHCHECK --interval=10s --timeout=6s --start-period=30s --retries=3 \
    CMD ["python", "scripts/healthcheck.py"]
CMD ["gunicorn", "-c", "messenger/gunicorn.conf.py", "messenger.wsgi"]
