# syntax=docker/dockerfile:1
#
# The Gatehouse gateway: the single-file bundle (npm run bundle) on Node 20, run by a user of its own.
#
#   docker build -f deploy/docker/gateway.Dockerfile -t gatehouse-gateway:0.1.0 .      (from the repository root)
#   docker run --rm -p 8080:8080 gatehouse-gateway:0.1.0                               (the embedded default)
#
# The bundle holds the default configuration and every built-in policy precompiled, so the image needs no
# node_modules, no compiler and no writable folder but the configuration backup. `source:` policies are not supported
# in it (name compiled modules with `module:`); docs/deployment.md says more. test/deployment.test.ts checks this
# file's structure: no image is built by the tests (they run where no Docker engine is).

# --- build: every dependency, dev ones included (esbuild and the policy SDK make the bundle) ---
FROM node:20.20.2-bookworm AS build
WORKDIR /src
COPY . .
# --ignore-scripts: the bundle needs no install script (better-sqlite3's native build is for the control plane only).
RUN npm ci --ignore-scripts --no-audit --no-fund \
 && npm run bundle

# --- the image: Node and one file ---
FROM node:20.20.2-bookworm-slim
RUN groupadd --system --gid 10001 gatehouse \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin gatehouse \
 && mkdir -p /var/lib/gatehouse/backup \
 && chown 10001:10001 /var/lib/gatehouse/backup \
 && chmod 0700 /var/lib/gatehouse/backup
WORKDIR /opt/gatehouse
# Owned by root and read-only to the gateway's user.
COPY --from=build /src/dist/bundle/gatehouse.mjs /opt/gatehouse/gatehouse.mjs
ENV NODE_ENV=production \
    GATEHOUSE_BACKUP_DIR=/var/lib/gatehouse/backup
USER 10001:10001
# 8080: HTTP; 8081: HTTPS, when GATEHOUSE_TLS_CERT_FILE and GATEHOUSE_TLS_KEY_FILE are given; 8082: the admin listener
# (/metrics, /readyz, /livez; no authentication), which listens on 127.0.0.1 inside the container, out of reach of a
# published port, unless GATEHOUSE_ADMIN_HOST says otherwise (0.0.0.0, as the Kubernetes manifests set it).
EXPOSE 8080 8081 8082
# Each configuration applied from a control plane is kept here, to start from when the control plane is unreachable.
VOLUME ["/var/lib/gatehouse/backup"]
# The data plane's probe path: 200 once a configuration is in force, 503 before and while shutting down. Kubernetes
# ignores HEALTHCHECK and uses the probes of deploy/kubernetes/gateway.yaml, on the same path.
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.GATEHOUSE_HTTP_PORT || 8080) + '/status-0123456789abcdef').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["node", "--disable-warning=ExperimentalWarning", "/opt/gatehouse/gatehouse.mjs"]
