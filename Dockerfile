# landfall: multi-stage build to a small, non-root runtime image for Cloud Run.
#   docker build -t landfall .
#   docker run -p 8080:8080 landfall          (embedded mode, data under /tmp/landfall-data)

FROM rust:1.95-bookworm AS build
WORKDIR /src
# Build the dependencies alone first so that editing src/ does not rebuild them.
COPY Cargo.toml Cargo.lock ./
RUN mkdir src \
 && echo 'fn main() {}' > src/main.rs \
 && touch src/lib.rs \
 && cargo build --release --locked \
 && rm -rf src
COPY src ./src
RUN touch src/main.rs src/lib.rs && cargo build --release --locked

# distroless/cc: glibc, libgcc and CA certificates, no shell, runs as uid 65532.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/landfall /usr/local/bin/landfall
# Cloud Run sets PORT; landfall listens on it (default 8080). JSON logs for Cloud Logging.
ENV LANDFALL_LOG_FORMAT=json \
    LANDFALL_DATA_DIR=/tmp/landfall-data
EXPOSE 8080
USER nonroot:nonroot
ENTRYPOINT ["/usr/local/bin/landfall"]
CMD ["serve"]
