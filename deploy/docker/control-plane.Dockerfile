# syntax=docker/dockerfile:1
#
# The Gatehouse control plane (runtime/control-plane) and the Node binary it runs on, on Debian, run by a user of its
# own. Node only: its SQLite driver, better-sqlite3, is a native addon, built in the first stage for the image's
# platform.
#
#   podman build --format docker -f deploy/docker/control-plane.Dockerfile -t gatehouse-control-plane:0.1.0 .   (from the repository root)
#   podman run --rm --network host -v gatehouse-cp:/var/lib/gatehouse-control-plane gatehouse-control-plane:0.1.0
#
# test/deployment.test.ts checks this file's structure and runs its file layout; npm run test:containers builds the
# image and runs it.

# --- build: compile dist/, build better-sqlite3, then drop the dev dependencies ---
FROM node:20.20.2-bookworm AS build
WORKDIR /src
# The dependencies from the package files alone, before the sources: the same layer as gateway.Dockerfile's, so
# building both images installs them once, and again only when they change.
COPY package.json package-lock.json ./
COPY abi/package.json abi/package.json
COPY sdk/package.json sdk/package.json
RUN npm ci --ignore-scripts --no-audit --no-fund
# The one install script the control plane needs, which --ignore-scripts skipped: better-sqlite3's native addon
# (node-gyp compiles SQLite and the binding side by side with JOBS=max).
RUN JOBS=max npm rebuild better-sqlite3
COPY . .
# dist/ (scripts/build.mjs, what the `prepare` script runs), then the production dependencies alone.
RUN npm run build \
 && npm prune --omit=dev --no-audit --no-fund

# --- the image: Debian, the Node binary, the compiled control plane and its production dependencies ---
# Node is the build stage's own binary: the version the addon was built for, without npm, yarn or Node's headers.
FROM debian:12.11-slim
COPY --from=build /usr/local/bin/node /usr/local/bin/node
RUN groupadd --system --gid 10001 gatehouse \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin gatehouse \
 && mkdir -p /var/lib/gatehouse-control-plane \
 && chown 10001:10001 /var/lib/gatehouse-control-plane \
 && chmod 0700 /var/lib/gatehouse-control-plane
WORKDIR /opt/gatehouse
# Owned by root and read-only to the control plane's user.
COPY --from=build /src/package.json /opt/gatehouse/package.json
COPY --from=build /src/node_modules /opt/gatehouse/node_modules
COPY --from=build /src/dist/runtime /opt/gatehouse/dist/runtime
COPY --from=build /src/dist/chunks /opt/gatehouse/dist/chunks
# The built-in policies and the SDK that builds them: the control plane checks every configuration it saves against
# the policies a gateway of its version has, as the gateway would (built once, into its volume).
COPY --from=build /src/policies /opt/gatehouse/policies
COPY --from=build /src/sdk /opt/gatehouse/sdk
# In a container it must listen on every interface (the default, 127.0.0.1, is for a control plane beside its users).
ENV NODE_ENV=production \
    GATEHOUSE_CP_HOST=0.0.0.0 \
    GATEHOUSE_CP_PORT=7070 \
    GATEHOUSE_CP_DATA_DIR=/var/lib/gatehouse-control-plane \
    GATEHOUSE_CP_POLICY_CACHE_DIR=/var/lib/gatehouse-control-plane/policy-builds
USER 10001:10001
EXPOSE 7070
# The SQLite database: APIs, revisions, gateway tokens' key, the module-signing key, named values (secrets as given).
VOLUME ["/var/lib/gatehouse-control-plane"]
# GET /status needs no token. With GATEHOUSE_CP_TLS_CERT_FILE it is HTTPS, with a certificate the check does not verify
# (it asks its own process, on 127.0.0.1).
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD ["node", "-e", "const client = process.env.GATEHOUSE_CP_TLS_CERT_FILE ? require('node:https') : require('node:http'); client.get({ host: '127.0.0.1', port: process.env.GATEHOUSE_CP_PORT || 7070, path: '/status', rejectUnauthorized: false }, (r) => process.exit(r.statusCode === 200 ? 0 : 1)).on('error', () => process.exit(1))"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["node", "--disable-warning=ExperimentalWarning", "/opt/gatehouse/dist/runtime/entry/control-plane.js"]
