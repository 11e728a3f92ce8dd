# syntax=docker/dockerfile:1
# SessionStore: build the TypeScript, then run it on a slim Node LTS image
# with production dependencies only, as an unprivileged user.
# CI runs these same steps outside Docker (.ci/emulate-dockerfile.ts).

FROM node:24-slim AS build
WORKDIR /app
# The lockfile names the client package (an npm workspace), so npm ci reads
# its package.json too; the client itself is not built into the image.
COPY package.json package-lock.json ./
COPY clients/typescript/package.json ./clients/typescript/
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY gen ./gen
COPY src ./src
RUN npm run build

FROM node:24-slim
ENV NODE_ENV=production
WORKDIR /app
COPY package.json package-lock.json ./
COPY clients/typescript/package.json ./clients/typescript/
# --workspaces=false: the server's production dependencies only, none of
# the client package's (such as @connectrpc/connect-web); its package.json
# is copied only so that npm ci finds every file the lockfile names.
RUN npm ci --omit=dev --workspaces=false --no-audit --no-fund && npm cache clean --force
COPY --from=build /app/dist ./dist
COPY proto ./proto
USER node
# gRPC, gRPC-Web and Connect (HTTP/2 and HTTP/1.1); admin: /healthz /readyz /metrics.
EXPOSE 50051 9090
# Asks the server's own grpc.health.v1.Health service; nothing extra to download.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["node", "dist/src/bin/healthcheck.js"]
# Exec form, so SIGTERM reaches Node and the server shuts down gracefully.
# The entry point's #! line (env -S) sets the runtime tuning, as for npm start.
ENTRYPOINT ["dist/src/bin/main.js"]
