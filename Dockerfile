# syntax=docker/dockerfile:1
#
# cdcaudit: one static binary on distroless.
#   docker build -t cdcaudit .
#   docker run --rm -v cdcaudit-data:/data -p 127.0.0.1:9187:9187 \
#     -e CDCAUDIT_DSN=postgres://cdcaudit:secret@db:5432/erp cdcaudit
# Inside the container the store is /data and the HTTP server (/metrics, the
# API) listens on 0.0.0.0:9187 in plain HTTP (CDCAUDIT_ALLOW_PLAIN_HTTP):
# publish the port on 127.0.0.1 (or a private network) only, or mount a
# certificate and set CDCAUDIT_TLS_CERT_FILE and CDCAUDIT_TLS_KEY_FILE.

FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
ARG VERSION=devel
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -trimpath -buildvcs=false \
      -ldflags "-s -w -X main.version=${VERSION}" \
      -o /out/cdcaudit ./cmd/cdcaudit \
 && mkdir -p /out/data /out/anchors && chmod 0770 /out/data /out/anchors

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/cdcaudit /usr/local/bin/cdcaudit
# The store directory (and /anchors, for an anchor_file kept on a volume of
# its own) belong to the unprivileged user (65532) and to group 0, both
# rwx, so a fresh named volume mounted on them is writable by the image's
# user and by any user run with group 0 (docker run --user UID:0): the
# compose file runs cdcaudit as Odoo's user, whose session store it reads.
COPY --from=build --chown=65532:0 /out/data /data
COPY --from=build --chown=65532:0 /out/anchors /anchors
USER 65532:65532
ENV CDCAUDIT_DATA_DIR=/data \
    CDCAUDIT_HTTP_ADDR=0.0.0.0:9187 \
    CDCAUDIT_ALLOW_PLAIN_HTTP=true
VOLUME ["/data"]
EXPOSE 9187
# `run` exits 0 after its final checkpoint on SIGTERM: give it time (docker
# stop -t, compose stop_grace_period).
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/cdcaudit"]
CMD ["run"]
