# syntax=docker/dockerfile:1
#
# Sediment broker image. Build from the repo root:
#   docker build -t sediment:0.1.0 .
# docs/deploy.md has the run and Kubernetes instructions.

# ---- build stage -----------------------------------------------------------
# Debian bookworm, so the binary's glibc matches the distroless debian12 runtime.
FROM rust:1.95-bookworm AS build

# protobuf-compiler: the etcd client (etcd-client, via prost/tonic-build)
# runs protoc at build time. cmake is not installed: only the tests need it (to
# build librdkafka for the rdkafka dev-dependency), `cargo build --bin` does
# not build dev-dependencies, and aws-lc-sys (rustls' crypto, through
# object_store) builds with the C compiler alone on x86_64 and aarch64 Linux.
# Versions are not pinned: Debian drops superseded package versions from
# its mirrors, so a pin would break the build at the next point release.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends protobuf-compiler \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /src
COPY . .

# The release profile keeps line tables (`debug = 1` in Cargo.toml) for
# profiling on a developer's machine; the image does not want them. Build
# without debug info and strip what the standard library brings, keeping the
# symbol table so that a panic's backtrace still names functions.
ENV CARGO_PROFILE_RELEASE_DEBUG=0 \
    CARGO_PROFILE_RELEASE_STRIP=debuginfo

# The cache mounts keep the registry and the target dir between builds
# (BuildKit, the default builder since Docker 23). The binary is copied out
# of the cached target dir, which is not part of the image.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin sediment \
 && install -D -m 0755 target/release/sediment /out/sediment \
 && mkdir -p /out/empty

# ---- runtime stage ---------------------------------------------------------
# distroless cc: glibc, libgcc_s, CA certificates (object_store's TLS checks
# the S3/GCS/Azure endpoints against them) and nothing else: no shell, no
# package manager. The `nonroot` variant's user is 65532:65532.
FROM gcr.io/distroless/cc-debian12:nonroot

LABEL org.opencontainers.image.title="sediment" \
      org.opencontainers.image.description="A Kafka-compatible streaming broker whose history lives in object storage as Parquet" \
      org.opencontainers.image.licenses="Apache-2.0"

COPY --from=build /out/sediment /usr/local/bin/sediment

# The data dir is the only path the broker writes (log, committed offsets,
# archive read cache and, without SEDIMENT_ARCHIVE, the archive itself), so
# the root filesystem can be mounted read-only (`docker run --read-only`,
# Kubernetes' readOnlyRootFilesystem). --chown gives the empty dir to the
# non-root user, so a fresh named volume starts writable.
COPY --from=build --chown=65532:65532 /out/empty/ /var/lib/sediment/
VOLUME ["/var/lib/sediment"]

# Flags win over these; Kubernetes sets SEDIMENT_ADVERTISE per pod. The
# default advertise address suits `docker run -p 9092:9092` on one machine:
# clients there reach the broker at localhost:9092.
ENV SEDIMENT_DATA_DIR=/var/lib/sediment \
    SEDIMENT_LISTEN=0.0.0.0:9092 \
    SEDIMENT_HTTP_LISTEN=0.0.0.0:9644 \
    SEDIMENT_ADVERTISE=localhost:9092

USER 65532:65532
WORKDIR /var/lib/sediment

# 9092: Kafka protocol. 9644: admin HTTP (/healthz, /readyz, /metrics).
EXPOSE 9092 9644

# SIGTERM (docker stop, Kubernetes) is a controlled shutdown: /readyz turns
# 503, requests under way finish within shutdown_timeout_ms (15 s by
# default), every partition is fsynced, exit 0. Give `docker stop` more than
# that: `docker stop -t 30` (its default is 10 s).
STOPSIGNAL SIGTERM

# No HTTP client exists in a distroless image, and the binary has no health
# subcommand; orchestrators probe GET /healthz and /readyz on 9644 themselves.
# checkov:skip=CKV_DOCKER_2: no HEALTHCHECK, see the comment above
HEALTHCHECK NONE

ENTRYPOINT ["sediment"]
CMD ["serve"]
