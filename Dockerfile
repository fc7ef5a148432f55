# syntax=docker/dockerfile:1
# pgmux container: a build stage with the full toolchain, and a small runtime stage that holds only
# the binary, its shared libraries and a config at /etc/pgmux/pgmux.json (mount your own over it).
#   docker build -t pgmux .
#   docker run --rm -p 9999:9999 -v "$PWD/my.json:/etc/pgmux/pgmux.json:ro" pgmux
# The example config is copied with its listener moved to 0.0.0.0:9999 (the container's port); a
# mounted config must also bind 0.0.0.0 to be reachable through the published port.

FROM debian:bookworm AS build
WORKDIR /src
# Same dependency script as developers and CI; --build-only skips the PostgreSQL servers and
# PgBouncer, which only the tests need.
COPY scripts/install-deps.sh scripts/install-deps.sh
RUN bash scripts/install-deps.sh --build-only && rm -rf /var/lib/apt/lists/*
COPY . .
RUN cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBUILD_TESTING=OFF \
 && ninja -C build pgmux \
 && install -D -s -m 0755 build/proxy/pgmux /out/usr/local/bin/pgmux \
 && mkdir -p /out/etc/pgmux \
 && sed 's/{"host": "127.0.0.1", "port": 6432}/{"host": "0.0.0.0", "port": 9999}/' conf/pgmux.json \
      > /out/etc/pgmux/pgmux.json \
 && { grep -qF '{"host": "0.0.0.0", "port": 9999}' /out/etc/pgmux/pgmux.json \
      || { echo "conf/pgmux.json: listener line changed; update the Dockerfile sed" >&2; exit 1; }; }

FROM debian:bookworm-slim AS runtime
# Runtime libraries only: libuv, OpenSSL, libpq (prober), prometheus-cpp (metrics endpoint) and the
# PostgreSQL parser library in case it is linked dynamically.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      ca-certificates libuv1 libssl3 libpq5 \
      libprometheus-cpp-core1.0 libprometheus-cpp-pull1.0 libpg-query1504.0 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system pgmux \
 && useradd --system --gid pgmux --home-dir /nonexistent --shell /usr/sbin/nologin pgmux
COPY --from=build /out/ /
# Fail the image build, not the first start, if a shared library is missing.
RUN if ldd /usr/local/bin/pgmux | grep -q 'not found'; then ldd /usr/local/bin/pgmux; exit 1; fi
USER pgmux
EXPOSE 9999
# Plain TCP connect to the listener through bash's /dev/tcp: needs no extra package.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/9999"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/pgmux", "-c", "/etc/pgmux/pgmux.json"]
