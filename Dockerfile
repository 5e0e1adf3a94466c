# syntax=docker/dockerfile:1
# Strata broker image: /usr/local/bin/strata-broker (the entrypoint) and /usr/local/bin/strata (the
# CLI), built from this workspace exactly as the tests build them (cargo build --release --locked).
#
#   docker build -t strata:0.1.0 --build-arg STRATA_GIT_COMMIT=$(git rev-parse --short HEAD) .
#   docker run --rm -p 9700:9700 -p 9701:9701 -v strata-data:/data strata:0.1.0
#
# With no arguments the broker listens on 0.0.0.0:9700 (clients) and 0.0.0.0:9701 (HTTP) and keeps
# its data in /data. The Helm chart (helm/strata) overrides the listeners with the pod's IP.

ARG RUST_IMAGE=rust:1.95-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

FROM ${RUST_IMAGE} AS builder
WORKDIR /src
# .git is not in the build context: the broker's build script takes the commit from here
# (strata_build_info{git_commit}); "unknown" when not given.
ARG STRATA_GIT_COMMIT=""
ENV STRATA_GIT_COMMIT=${STRATA_GIT_COMMIT}
COPY . .
# The registry and target directory live in cache mounts (kept between builds, not in the image),
# so the binaries are copied out of target/ in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p strata-broker -p strata-client \
    && install -D -m 0755 target/release/strata-broker /out/strata-broker \
    && install -D -m 0755 target/release/strata /out/strata

FROM ${RUNTIME_IMAGE}
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --gid 10001 strata \
    && useradd --uid 10001 --gid 10001 --home-dir /data --no-create-home --shell /usr/sbin/nologin strata \
    && install -d -o 10001 -g 10001 -m 0750 /data
COPY --from=builder /out/strata-broker /out/strata /usr/local/bin/
ENV STRATA_LISTEN=0.0.0.0:9700 \
    STRATA_HTTP=0.0.0.0:9701 \
    STRATA_DATA_DIR=/data
USER 10001:10001
WORKDIR /data
VOLUME /data
# 9700: clients and the brokers' Raft traffic; 9701: HTTP (/metrics, /healthz, /readyz, admin API).
EXPOSE 9700 9701
# SIGTERM drains the broker (docker stop's default signal); give it more than [shutdown] timeout:
#   docker stop -t 60 ...
STOPSIGNAL SIGTERM
ENTRYPOINT ["strata-broker"]
