# The cityops image: one Python environment for the init job, the workers and the simulator
# of docker-compose.yml. The build context is whitelisted in .dockerignore (packages and
# pyproject only), so a local .venv, broker data or Kafka jars never end up in the image.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    CITYOPS_VAR_DIR=/var/lib/cityops

WORKDIR /opt/cityops
COPY . .

# A regular (not editable) install: the reference data, Avro schemas and default thresholds
# travel as package data. Runtime files go to CITYOPS_VAR_DIR, owned by an unprivileged user.
# accounts/: the board's operator accounts, partner-tokens/: the gateway's partner tokens, named
# volumes in docker-compose.yml (created here so that the volumes are the unprivileged user's).
RUN pip install . \
    && useradd --system --uid 10001 --user-group --home-dir /var/lib/cityops --create-home cityops \
    && install -d -o cityops -g cityops -m 0700 /var/lib/cityops/accounts \
       /var/lib/cityops/partner-tokens

USER cityops

# 9108: Prometheus metrics, 6066: Faust web (situation board and JSON API).
EXPOSE 9108 6066

CMD ["cityops", "--help"]
