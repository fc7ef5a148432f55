# pgmux container: a build stage with the full toolchain, and a small runtime stage that holds only
# the binary, its shared libraries and a config at /etc/pgmux/pgmux.json (mount your own over it).
#   docker build -t pgmux .
#   docker run --rm -p 9999:9999 -v "$PWD/my.json:/etc/pgmux/pgmux.json:ro" pgmux
# The example config is copied with its listener moved to 0.0.0.0:9999 (the container's port) and the
# metrics/health listener to 0.0.0.0:9930; a mounted config must also bind 0.0.0.0 to be reachable
# through the published ports. No "# syntax" line: BuildKit would fetch a frontend image first, which an
# offline or mirrored build cannot. Podman keeps the HEALTHCHECK only with --format docker.
# BASE_IMAGE / RUNTIME_IMAGE: the Debian 12 images the two stages start from; scripts/build-image.sh
# passes one made locally with debootstrap, so that the build needs no registry at all.
ARG BASE_IMAGE=debian:bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

FROM ${BASE_IMAGE} AS build
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
 && sed -e 's/{"host": "127.0.0.1", "port": 6432}/{"host": "0.0.0.0", "port": 9999}/' \
      -e 's/^  "workers": 0,/  "metrics_listen": "0.0.0.0:9930",\n  "workers": 0,/' conf/pgmux.json \
      > /out/etc/pgmux/pgmux.json \
 && { grep -qF '{"host": "0.0.0.0", "port": 9999}' /out/etc/pgmux/pgmux.json \
      && grep -qF '"metrics_listen": "0.0.0.0:9930"' /out/etc/pgmux/pgmux.json \
      || { echo "conf/pgmux.json: listener or workers line changed; update the Dockerfile sed" >&2; exit 1; }; }

FROM ${RUNTIME_IMAGE} AS runtime
# Runtime libraries the binary links (ldd below checks): libuv, OpenSSL, libpq (prober, catalog, auth_query)
# and prometheus-cpp's core (libpg_query is linked statically; the HTTP endpoint is pgmux's own).
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      ca-certificates libuv1 libssl3 libpq5 libprometheus-cpp-core1.0 \
 && apt-get clean && rm -rf /var/lib/apt/lists/* /var/cache/apt/* \
 && groupadd --system pgmux \
 && useradd --system --gid pgmux --home-dir /nonexistent --shell /usr/sbin/nologin pgmux
COPY --from=build /out/ /
# Fail the image build, not the first start, if a shared library is missing.
RUN if ldd /usr/local/bin/pgmux | grep -q 'not found'; then ldd /usr/local/bin/pgmux; exit 1; fi
USER pgmux
# 9999: clients; 9930: /metrics, /healthz, /readyz, /status.
EXPOSE 9999 9930
# The port the HEALTHCHECK asks on 127.0.0.1: set it (-e PGMUX_HEALTH_PORT=...) when a mounted config moves
# metrics_listen, e.g. with --network host beside another pgmux.
ENV PGMUX_HEALTH_PORT=9930
# Healthy means ready: /readyz answers 200 only while a primary is known (503 while every backend is down).
# bash's /dev/tcp speaks the HTTP request: no curl or wget in the image.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/${PGMUX_HEALTH_PORT} && printf 'GET /readyz HTTP/1.0\\r\\n\\r\\n' >&3 && head -n 1 <&3 | grep -q ' 200 '"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/pgmux", "-c", "/etc/pgmux/pgmux.json"]
