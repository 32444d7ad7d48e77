# One image for the whole town: every server and the `township` CLI (used by the health checks),
# copied from binaries built on the host (docker/stage.sh strips them into target/docker/).
# Classic-builder compatible (docker-compose 1.29): no `# syntax=` line, no RUN at all.
#
# BASE_IMAGE: township-base:local is made by docker/base-image.sh from this host's own loader,
# libraries and tz data, with no registry. Where images can be pulled, any glibc base at least as
# new as the host's glibc works, e.g. --build-arg BASE_IMAGE=debian:bookworm-slim.
ARG BASE_IMAGE=township-base:local
FROM ${BASE_IMAGE}

# /data, /certs, /ca and /secrets are owned by the non-root user: a named volume mounted there
# starts as a copy of it (so compose's one-shot `certs` service can write into its volumes, and the
# bank replicas of docker-compose.postgres.yml into their shared bank-secrets volume).
COPY --chown=10001:10001 target/docker/data/ /data/
COPY --chown=10001:10001 target/docker/data/ /certs/
COPY --chown=10001:10001 target/docker/data/ /ca/
COPY --chown=10001:10001 target/docker/data/ /secrets/
COPY target/docker/bin/ /usr/local/bin/

ENV PATH=/usr/local/bin:/usr/bin:/bin \
    TZ=UTC \
    TOWNSHIP_DATA_DIR=/data
# Numeric, so that bases without a `township` entry in /etc/passwd (debian:bookworm-slim) work too.
USER 10001:10001
WORKDIR /data
STOPSIGNAL SIGTERM
CMD ["township", "--help"]
