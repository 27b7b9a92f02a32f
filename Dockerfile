# quotaq's commands in one small image (no shell, runs as nonroot):
#
#   quotaq-worker    ./cmd/worker         the throttled asynq worker (+ --schedule)
#   quotaq-enqueue   ./cmd/enqueue        the CLI: enqueue tasks, policies, status
#   quotaq-upstream  ./examples/upstream  the examples' fake rate-limited API
#
#   docker build -t quotaq .
#   docker run --rm -e REDIS_URL=redis://redis.example:6379/0 quotaq quotaq-worker --help
#
# The worker needs REDIS_URL (or --embedded to try it without Redis), and
# serves /metrics on loopback unless given --metrics-addr=:2112, as
# docker-compose.yml does, to publish the port.
#
# The image has no shell: a container healthcheck runs the worker itself,
# ["CMD", "quotaq-worker", "healthcheck"], which asks its /healthz.
#
# docker-compose.yml runs them with Redis. Time zones for CRON_TZ= are compiled
# in (-tags timetzdata), so the image needs no tzdata.

FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ENV CGO_ENABLED=0
# the version --version prints (the source here has no .git to tell it):
# docker build --build-arg VERSION=$(git describe --tags --always --dirty) .
ARG VERSION=(devel)
RUN go build -trimpath -tags timetzdata -ldflags="-s -w -X github.com/quotaq/quotaq/worker.release=${VERSION}" -o /out/quotaq-worker ./cmd/worker
RUN go build -trimpath -tags timetzdata -ldflags="-s -w -X github.com/quotaq/quotaq/worker.release=${VERSION}" -o /out/quotaq-enqueue ./cmd/enqueue
RUN go build -trimpath -tags timetzdata -ldflags="-s -w" -o /out/quotaq-upstream ./examples/upstream

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/ /usr/local/bin/
USER nonroot:nonroot
EXPOSE 2112 8080
CMD ["quotaq-worker"]
