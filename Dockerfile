# landfall: a small, non-root runtime image for Cloud Run.
#   docker build -t landfall .
#   docker run -p 8080:8080 landfall          (embedded mode, data under /tmp/landfall-data)
#
# cargo-chef builds the dependencies from a recipe of the manifests alone, so editing src/ or
# schemas/ reuses that layer; `.ci/run` replays these stages in a folder and starts the result.

ARG RUST_VERSION=1.95
FROM rust:${RUST_VERSION}-bookworm AS chef
RUN cargo install cargo-chef --locked --version 0.1.78
# Strip symbols from the release binary (37 MB → 29 MB); the same for cook and build, so
# the cooked dependencies are reused.
ENV CARGO_PROFILE_RELEASE_STRIP=symbols
WORKDIR /src

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS build
COPY --from=planner /src/recipe.json recipe.json
RUN cargo chef cook --release --locked --recipe-path recipe.json --bin landfall
COPY . .
RUN cargo build --release --locked --bin landfall

# distroless/cc: glibc, libgcc, CA certificates and /tmp; no shell; uid 65532 (nonroot).
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/landfall /usr/local/bin/landfall
# Cloud Run sets PORT; landfall listens on it (8080 otherwise). JSON logs for Cloud Logging.
ENV LANDFALL_LOG_FORMAT=json \
    LANDFALL_DATA_DIR=/tmp/landfall-data
EXPOSE 8080
USER nonroot:nonroot
ENTRYPOINT ["/usr/local/bin/landfall"]
CMD ["serve"]
