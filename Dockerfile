# Fil: one process on the embedded SQLite store. Build: docker build -t fil .
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    CURATION_HOST=0.0.0.0 \
    CURATION_PORT=8000 \
    CURATION_STORE=sqlite:////data/fil.db

RUN groupadd --system fil && useradd --system --gid fil --home-dir /app --shell /usr/sbin/nologin fil

WORKDIR /app
COPY pyproject.toml README.md ./
COPY curation ./curation
RUN pip install .
COPY app.py sources.yaml ./
COPY templates ./templates
COPY static ./static

RUN mkdir -p /data && chown fil:fil /data
VOLUME ["/data"]
USER fil
EXPOSE 8000

HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
  CMD python -c "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4).status == 200 else 1)"

CMD ["python", "app.py"]
