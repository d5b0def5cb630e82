# syntax=docker/dockerfile:1

# Build stage: the TypeScript compiler and the dev dependencies stay here and never
# reach the image that runs next to patient data.
FROM node:22-bookworm-slim AS build
WORKDIR /app
# Dependencies first, so a source change does not redo the install layer.
COPY package.json package-lock.json ./
RUN npm ci
# The whole (.dockerignore'd) tree rather than folder by folder: git keeps no empty
# folders, so a COPY of a folder that has no files yet (plugins/) would fail a fresh clone.
COPY . .
RUN npm run build \
 && rm -rf dist/test

# Runtime stage.
FROM node:22-bookworm-slim
ENV NODE_ENV=production
WORKDIR /app
# Production dependencies only, and no install scripts: nothing a dependency's package
# runs at install time ends up in the image.
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts \
 && npm cache clean --force
# Owned by root and not writable by the process: a compromised wardgate cannot rewrite
# its own code or the example configs.
COPY --from=build /app/dist ./dist
# The example configs and the files they name beside them (the demo MDM's public key).
COPY config/*.yaml config/*.pub ./config/
# The admin API's OpenAPI description, served at /api/v1/openapi.json: read from the
# package root (proxy/admin/openapi.ts), where it is in the source tree too.
COPY proxy/admin/openapi.json ./proxy/admin/

# The file store (store.path in config/hospital.yaml): grants and break-glass records
# must survive a restart, so they live on a volume, the one place the process may write.
RUN mkdir -p /var/lib/wardgate && chown node:node /var/lib/wardgate && chmod 700 /var/lib/wardgate
VOLUME /var/lib/wardgate

# The image's unprivileged `node` user (uid 1000). Both ports are above 1024, so no
# capability is needed to bind them.
USER node
EXPOSE 8443 9090

# No curl in slim images, so node itself probes the admin listener. 127.0.0.1:9090 is
# admin.listen in config/hospital.yaml; keep them in step (a 0.0.0.0:9090 admin listener
# answers on 127.0.0.1 too).
HEALTHCHECK --interval=10s --timeout=3s --start-period=15s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:9090/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]

# Exec form: node is PID 1 and receives SIGTERM directly, which wardgate handles by
# draining for shutdown.drainTimeout (PID 1 gets no default signal handlers, so the CLI
# must install its own).
ENTRYPOINT ["node", "dist/proxy/cli.js"]
# Mount the deployment's config, certificates and keys under /etc/wardgate/.
CMD ["start", "--config", "/etc/wardgate/wardgate.yaml"]
