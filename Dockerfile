# Multi-stage build: compile the release binary, ship it on a slim runtime.
FROM rust:1-bookworm AS build
# pg_query builds the Postgres parser from C and needs libclang for bindgen.
RUN apt-get update && apt-get install -y --no-install-recommends libclang-dev clang \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
RUN cargo build --release --locked --bin pgtenant

FROM debian:bookworm-slim
# tini as PID 1: the kernel gives PID 1 no default signal actions, so a CLI
# command run with `docker run` would ignore Ctrl-C; tini forwards signals
# (SIGTERM still reaches the proxy's drain) and reaps.
# A fixed numeric user: mounted key and config files can be made readable
# by it, and runAsNonRoot can check it.
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates tini \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 pgtenant \
    && useradd --system --uid 10001 --gid 10001 --no-create-home \
       --shell /usr/sbin/nologin pgtenant
COPY --from=build /src/target/release/pgtenant /usr/local/bin/pgtenant
USER 10001:10001
# No config file: the example's settings are the defaults, and without its
# loopback backend.url a forgotten PGTENANT_BACKEND_URL says "required".
# Mount a file and set PGTENANT_CONFIG to use one.
ENV PGTENANT_LISTEN_ADDR=0.0.0.0:6432
EXPOSE 6432
ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/bin/pgtenant"]
CMD ["serve"]
