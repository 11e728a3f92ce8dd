# syntax=docker/dockerfile:1
# SessionStore: build the TypeScript, then run it on a slim image with
# production dependencies only, as an unprivileged user.

FROM node:20-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY gen ./gen
COPY src ./src
RUN npm run build

FROM node:20-slim
ENV NODE_ENV=production
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force
COPY --from=build /app/dist ./dist
COPY proto ./proto
USER node
EXPOSE 50051
# Exec form, so SIGTERM reaches Node and the server shuts down gracefully.
# The entry point's #! line (env -S) sets the runtime tuning, as for npm start.
ENTRYPOINT ["dist/src/main.js"]
