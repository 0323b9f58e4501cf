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
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --no-create-home --shell /usr/sbin/nologin pgtenant
COPY --from=build /src/target/release/pgtenant /usr/local/bin/pgtenant
COPY config/pgtenant.toml /etc/pgtenant/pgtenant.toml
USER pgtenant
ENV PGTENANT_CONFIG=/etc/pgtenant/pgtenant.toml \
    PGTENANT_LISTEN_ADDR=0.0.0.0:6432
EXPOSE 6432
ENTRYPOINT ["/usr/local/bin/pgtenant"]
CMD ["serve"]
