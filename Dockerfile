# syntax=docker/dockerfile:1
#
# The hospital image: one binary, `/usr/local/bin/hospital`; the service to run is the
# argument (`records`, `telemedicine`, `billing`, `migrate`; none runs all three).
#
#   docker build -t hospital:0.1.0 .
#   docker run --rm -p 8080:8080 hospital:0.1.0          # embedded mode, SQLite in the container
#
# The SQL migrations (migrations/) are compiled into the binary by `sqlx::migrate!`
# (services/store/src/open.rs), so the image carries no SQL files: `hospital migrate`, and
# every process at start, brings the schema up to date.

FROM rust:1.95-bookworm AS builder
WORKDIR /src
# .dockerignore keeps target/, data/, .git and the deployment files out of the context.
COPY . .
# BuildKit caches the crates and the target directory between builds; the binary is copied
# out of the cached target directory in the same step. An empty data directory (0700, as the
# server makes it) is prepared for the embedded mode of `docker run`.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked --bin hospital \
    && install -D -m 0755 target/release/hospital /out/bin/hospital \
    && install -d -m 0700 /out/data

# distroless "cc": glibc, libgcc, CA certificates and tzdata, no shell and no package
# manager; the build stage is Debian bookworm too, so the C libraries match.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=builder /out/bin/hospital /usr/local/bin/hospital
COPY --from=builder --chown=10001:10001 /out/data /var/lib/hospital/data
WORKDIR /var/lib/hospital
# A container listens on every interface (the binary's own default is loopback). Kubernetes
# sets these again, with the rest of the configuration (k8s/base).
ENV PATH=/usr/local/bin:/usr/bin:/bin \
    HOSPITAL_HTTP_ADDR=0.0.0.0:8080 \
    HOSPITAL_RECORDS_GRPC_ADDR=0.0.0.0:50051 \
    HOSPITAL_TELEMEDICINE_GRPC_ADDR=0.0.0.0:50052 \
    HOSPITAL_BILLING_GRPC_ADDR=0.0.0.0:50053 \
    HOSPITAL_METRICS_ADDR=0.0.0.0:9090
# HTTP (FHIR, pages, webhooks, probes); gRPC of records, telemedicine, billing; metrics.
EXPOSE 8080 50051 50052 50053 9090
# Not root: the same uid/gid as the pods' securityContext (k8s/base).
USER 10001:10001
ENTRYPOINT ["hospital"]
