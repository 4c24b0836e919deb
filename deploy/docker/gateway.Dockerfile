# syntax=docker/dockerfile:1
#
# The Gatehouse gateway: the single-file bundle (npm run bundle) and the Node binary it runs on, on Debian, run by a
# user of its own.
#
#   podman build --format docker -f deploy/docker/gateway.Dockerfile -t gatehouse-gateway:0.1.0 .   (from the repository root)
#   podman run --rm --network host gatehouse-gateway:0.1.0                                          (the embedded default)
#
# The bundle holds the default configuration and every built-in policy precompiled, so the image needs no
# node_modules, no npm, no compiler and no writable folder but the configuration backup. `source:` policies are not
# supported in it (name compiled modules with `module:`); docs/deployment.md says more. test/deployment.test.ts checks
# this file's structure; npm run test:containers builds the image and runs it.

# --- build: every dependency, dev ones included (esbuild and the policy SDK make the bundle) ---
FROM node:20.20.2-bookworm AS build
WORKDIR /src
# The dependencies from the package files alone, before the sources: this layer is built again only when they change,
# and it is the same in control-plane.Dockerfile, so building both images installs them once.
COPY package.json package-lock.json ./
COPY abi/package.json abi/package.json
COPY sdk/package.json sdk/package.json
# --ignore-scripts: the bundle needs no install script (better-sqlite3's native build is for the control plane only).
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY . .
# The SDK's build cache, kept by the builder between builds (entries are named by what was compiled): an unchanged
# policy is not compiled again.
RUN --mount=type=cache,target=/src/.cache/policy-builds npm run bundle

# --- the image: Debian, the Node binary and one file ---
# Node is the build stage's own binary (the official node images' /usr/local/bin/node): the same version that built the
# bundle, without npm, yarn, corepack or Node's headers, which the node:*-slim images carry.
FROM debian:12.11-slim
COPY --from=build /usr/local/bin/node /usr/local/bin/node
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
# Each configuration applied from a control plane is kept here, to start from when the control plane is unreachable,
# with the policy modules metered for their CPU budget (instrumented/; without a control plane they go to /tmp).
VOLUME ["/var/lib/gatehouse/backup"]
# The data plane's probe path: 200 once a configuration is in force, 503 before and while shutting down. Kubernetes
# ignores HEALTHCHECK and uses the probes of deploy/kubernetes/gateway.yaml, on the same path. The OCI image format
# has no HEALTHCHECK: podman keeps it only with `podman build --format docker`.
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.GATEHOUSE_HTTP_PORT || 8080) + '/status-0123456789abcdef').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["node", "--disable-warning=ExperimentalWarning", "/opt/gatehouse/gatehouse.mjs"]
