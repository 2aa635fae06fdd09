# Production image: `herald serve`. Configure by environment (HERALD_<SECTION>__<KEY>) or a
# mounted file pointed to by HERALD_CONFIG.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    HERALD_SERVER__HOST=0.0.0.0 \
    HERALD_SERVER__PORT=8080 \
    HERALD_DATABASE__URL=sqlite:////data/herald.db

RUN useradd --create-home --uid 10001 herald && mkdir /data && chown herald /data
WORKDIR /app
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY channels ./channels
RUN pip install --no-cache-dir .

USER herald
VOLUME ["/data"]
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD python -c "import os, urllib.request; urllib.request.urlopen(f'http://127.0.0.1:{os.environ.get(\"HERALD_SERVER__PORT\", \"8080\")}/healthz', timeout=4)" || exit 1
CMD ["herald", "serve"]
