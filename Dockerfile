# The image of every process of the stack (compose.yaml builds it from here):
# the ingress, the workers and Flower differ only by their command.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml README.md ./
# agora_callbacks/ingress, /workers and /schemas are links to these folders.
COPY agora_callbacks ./agora_callbacks
COPY ingress ./ingress
COPY workers ./workers
COPY schemas ./schemas
RUN pip install . \
 && useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin app
# Not root: Celery warns against running workers as root,
# and nothing here needs it.
USER app

EXPOSE 8080 5555 9808
CMD ["agora-callbacks", "web"]
