# sluice's container image: docker build -t registry.example/sluice:0.1.0 .
#
# Two stages on Debian 12 (the project's platform): the build stage installs the -dev
# packages and runs `make build/sluice`; the runtime stage has only the shared libraries
# the binary links (checked by deploy/validate.sh against `ldd`), the binary and a default
# configuration, and runs as an unprivileged user. Mount your own configuration over
# /etc/sluice/sluice.yaml (Kubernetes: deploy/k8s/configmap.yaml). See docs/deploy.md.
ARG DEBIAN_IMAGE=debian:12-slim

FROM ${DEBIAN_IMAGE} AS build
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      gcc libc6-dev make pkg-config \
      libuv1-dev libyaml-dev libjansson-dev libssl-dev libhiredis-dev zlib1g-dev libbrotli-dev libnghttp2-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Only what `make build/sluice` reads (the status page is embedded by tools/embed).
COPY Makefile ./
COPY tools/ tools/
COPY src/ src/
RUN make -j"$(nproc)" build/sluice \
 && build/sluice --version
# The image's default configuration: listen on every address of the container, no
# routes (every request gets the 404 JSON answer) until you mount your own.
# shutdown_timeout 8s fits `docker stop`'s default 10s; with a longer drain give
# `docker run --stop-timeout` (or compose's stop_grace_period) a few seconds more.
RUN printf '%s\n' \
      '# Default configuration of the sluice image: replace it by mounting your own.' \
      'listen: ["*:8080"]' \
      'workers: auto' \
      'admin: { listen: "*:9901" }' \
      'access_log: stderr' \
      'limits: { max_connections: 10000, shutdown_timeout: 8s }' \
      > /src/sluice.yaml \
 && build/sluice -t -c /src/sluice.yaml

FROM ${DEBIAN_IMAGE}
LABEL org.opencontainers.image.title="sluice" \
      org.opencontainers.image.description="HTTP traffic gateway" \
      org.opencontainers.image.version="0.1.0"
# The runtime libraries of build/sluice (libcrypto is in libssl3); nothing else: the
# health check below uses bash's /dev/tcp, not curl.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      libuv1 libyaml-0-2 libjansson4 libssl3 libhiredis0.14 zlib1g libbrotli1 libnghttp2-14 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 10001 sluice \
 && useradd --uid 10001 --gid sluice --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin sluice
COPY --from=build /src/build/sluice /usr/local/bin/sluice
COPY --from=build /src/sluice.yaml /etc/sluice/sluice.yaml
# Numeric, so Kubernetes' runAsNonRoot can check it (deploy/k8s uses 10001 too); above
# the system range, so it matches no account of the host.
USER 10001:10001
EXPOSE 8080 9901
# SIGTERM: stop accepting, finish in-flight requests within limits.shutdown_timeout,
# exit 0. (SIGHUP does not reload the configuration yet: restart the container.)
STOPSIGNAL SIGTERM
# GET /health on the admin listener, with bash's /dev/tcp (no curl in the image). It
# assumes the admin listener on port 9901, as in the default configuration.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/9901 && printf 'GET /health HTTP/1.1\\r\\nHost: localhost\\r\\nConnection: close\\r\\n\\r\\n' >&3 && head -n 1 <&3 | grep -q ' 200 '"]
ENTRYPOINT ["/usr/local/bin/sluice"]
CMD ["-c", "/etc/sluice/sluice.yaml"]
