# syntax=docker/dockerfile:1
# The spine binary: every subcommand (`spine up`, `spine run <processor>`,
# `spine registry`, ...) from one image. Configured by environment variables
# only (see `spine --help` and deploy/README.md).
#
#   docker build -t spine:local .
#   docker run --rm -p 8080:8080 -p 8081:8081 spine:local up

FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
ARG VERSION=dev
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -trimpath -ldflags="-s -w -X main.version=${VERSION}" -o /out/spine ./cmd/spine

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/spine /usr/local/bin/spine
# The embedded broker of `spine up` persists here; mount a volume to keep it.
ENV SPINE_DATA_DIR=/home/nonroot/spine-data
# A container's loopback is its own: listen on its interface so that
# published ports (-p 8080:8080) reach it. Outside a container the default
# is 127.0.0.1.
ENV SPINE_BIND_HOST=0.0.0.0
WORKDIR /home/nonroot
USER nonroot:nonroot
# 8080: /healthz, /metrics, projections API and dashboard (SPINE_HTTP_ADDR);
# 8081: Spine's schema registry under `spine up` (SPINE_REGISTRY_ADDR).
EXPOSE 8080 8081
ENTRYPOINT ["/usr/local/bin/spine"]
CMD ["up"]
