# syntax=docker/dockerfile:1
#
# r2-sync container image.
#
#   docker build -t r2-sync --build-arg VERSION=0.1.0 .
#
# Runs as PUID:PGID (default 99:100, Unraid's nobody:users) with UMASK 022; see
# docker/entrypoint.sh. Settings are environment variables (unraid-template.xml,
# .env.example).

# ---------------------------------------------------------------------------
# ffprobe stage: a minimal, static ffprobe from Debian's ffmpeg source (validation only; see
# scripts/build-ffprobe.sh). It depends on nothing else in the checkout, so a code change
# reuses this layer.
# ---------------------------------------------------------------------------
FROM debian:bookworm-slim AS ffprobe

WORKDIR /build
COPY scripts/build-ffprobe.sh scripts/
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# Two builds: ffprobe, and ffprobe-demux (the same without video decoders), which r2-sync
# asks first (FFPROBE_DEMUX_PATH; src/probe.rs).
RUN install -D -m 0755 "$(scripts/build-ffprobe.sh /tmp/ffprobe | tail -n 1)" /out/ffprobe \
    && install -D -m 0755 "$(scripts/build-ffprobe.sh --demux-only /tmp/ffprobe | tail -n 1)" /out/ffprobe-demux

# ---------------------------------------------------------------------------
# Build stage
# ---------------------------------------------------------------------------
FROM rust:1-slim-bookworm AS build

WORKDIR /src

# The whole workspace: cargo needs every member's manifest (state, tests/*, bench)
# to load the workspace, but `-p r2-sync` compiles only r2-sync and its dependencies,
# never the test S3 server.
COPY . .

# BuildKit cache mounts keep the crate registry and target/ between builds; the binary
# is copied out of the cache mount so the next stage can see it.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked -p r2-sync \
    && install -D -m 0755 target/release/r2-sync /out/r2-sync

# ---------------------------------------------------------------------------
# Runtime stage
# ---------------------------------------------------------------------------
FROM debian:bookworm-slim

# tini is PID 1 (signals, zombies); gosu drops root to PUID:PGID in the entrypoint. ffprobe
# (media validation) comes from the ffprobe stage, not Debian's ffmpeg package (707 MB).
# The r2sync user is created here with Unraid's defaults (99:100, group "users");
# the entrypoint moves it to PUID/PGID at start.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        ca-certificates \
        gosu \
        tini \
    && apt-get clean \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin \
    && gosu nobody true \
    && useradd --uid 99 --gid 100 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin r2sync \
    && mkdir -p /config /media \
    && chown 99:100 /config
# DL3008 (pin apt versions) is ignored on purpose: Debian's archive drops superseded
# versions as soon as a security update lands, so pinned versions break rebuilds; the
# base image tag (bookworm) already fixes the release.

ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="r2-sync" \
      org.opencontainers.image.description="Archives approved media from a Cloudflare R2 bucket to an Unraid share and serves it behind a Cloudflare Tunnel with JWT-signed links" \
      org.opencontainers.image.source="https://github.com/r2-sync/r2-sync" \
      org.opencontainers.image.url="https://github.com/r2-sync/r2-sync" \
      org.opencontainers.image.documentation="https://github.com/r2-sync/r2-sync#readme" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"

# The ffprobe the corpus test (tests/it/probe_corpus.rs) holds to Debian's verdicts; it is
# rebuilt only when its script changes, so it comes before the binary that every change makes.
COPY --from=ffprobe /out/ffprobe /out/ffprobe-demux /usr/local/bin/
COPY --from=build /out/r2-sync /usr/local/bin/r2-sync
COPY --chmod=0755 docker/entrypoint.sh /usr/local/bin/docker-entrypoint.sh

ENV STATE_DIR=/config \
    FFPROBE_DEMUX_PATH=ffprobe-demux \
    ARCHIVE_DIR=/media/archive \
    PUID=99 \
    PGID=100 \
    UMASK=022

VOLUME ["/config", "/media"]

# 8080: file server (point the cloudflared tunnel here); 8081: health endpoints.
EXPOSE 8080 8081

STOPSIGNAL SIGTERM

# `r2-sync healthcheck` GETs http://127.0.0.1:$HEALTH_PORT/health (no curl needed).
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["/usr/local/bin/r2-sync", "healthcheck"]

ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/bin/docker-entrypoint.sh"]
CMD ["run"]
