# L0 order service image. One image runs every part of the project:
#   l0-service serve     (the default CMD: HTTP + Kafka consumer)
#   l0-service migrate   (the one-shot `migrate` service of docker-compose.yml)
#   l0-producer ...      (replays an orders file into Kafka)
# See docs/docker.md. No Docker engine runs in CI here; tests/unit/test_deploy_files.py checks this file.

# ---------------------------------------------------------------------------------------------------------
# builder: installs the project (a wheel, not editable) and its pinned dependencies into /opt/venv.
FROM python:3.11-slim AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PATH=/opt/venv/bin:$PATH

WORKDIR /src
RUN python -m venv /opt/venv

# Dependencies first, in their own layer, so a code change does not download them again. README.m[d] is
# optional (the wildcard matches nothing while there is no README.md; pyproject's readme is then empty).
COPY pyproject.toml constraints.txt README.m[d] ./
RUN python -c 'import tomllib; print(*tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"], sep="\n")' \
        > /tmp/requirements.txt \
    && pip install -c constraints.txt -r /tmp/requirements.txt

# Then the project itself; its dependencies are already satisfied, so this only builds and installs it.
COPY internal/ ./internal/
RUN pip install -c constraints.txt .

# ---------------------------------------------------------------------------------------------------------
# runtime: the venv plus the files the service reads at run time; no compiler, no pip cache, no root.
FROM python:3.11-slim AS runtime

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HTTP_HOST=0.0.0.0 \
    HTTP_PORT=8080

RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid 10001 --home-dir /app --no-create-home --shell /usr/sbin/nologin app

COPY --from=builder /opt/venv /opt/venv

WORKDIR /app
COPY sql/ ./sql/
COPY templates/ ./templates/
COPY config.yaml.example ./

# internal/pkg/paths.py finds sql/ and templates/ under L0_HOME (in a source checkout: beside internal/).
# The check fails the build, not the first `migrate`, if the code looks elsewhere.
ENV L0_HOME=/app
RUN python -c "import sys; from internal.pkg.paths import migrations_dir as d; sys.exit(0 if sorted(d().glob('*.sql')) else f'no migrations in {d()}')" \
    && l0-service check-config > /dev/null \
    && l0-producer --help > /dev/null

USER 10001:10001
EXPOSE 8080

# Liveness only (the process and its consumer loop run); slim has no curl, so python's urllib asks.
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('HTTP_PORT', '8080'), timeout=3)"]

CMD ["l0-service", "serve"]
