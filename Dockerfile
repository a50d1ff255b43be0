# syntax=docker/dockerfile:1
#
# inkan: one static binary on distroless, running as uid/gid 65532 (nonroot),
# with BoringCrypto on amd64/arm64 (`--build-arg CRYPTO=go` for pure Go).
#
#   docker build --build-arg VERSION=$(git describe --tags --always) -t inkan .
#   docker run -d --name inkan -e INKAN_HOSTNAME=mail.example.com \
#     -p 465:2465 -p 587:2587 -p 127.0.0.1:8025:8025 -v inkan-data:/var/lib/inkan inkan
#
# Ports: inside the container inkan listens on unprivileged ports, so it needs
# no capability and runs the same under Docker, Podman and Kubernetes with all
# capabilities dropped. Publish them on the standard ports:
#   2465 smtps (465), 2587 submission (587), 2525 relay (25), 8025 http
# Any setting can be changed with INKAN_* variables (see deploy/README.md).

FROM --platform=$BUILDPLATFORM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
ARG VERSION
ARG CRYPTO=boring
ARG TARGETOS
ARG TARGETARCH
# The release build links BoringCrypto through cgo, statically (deploy/build.sh):
# building for the other architecture needs its cross C compiler and libc.
# A native build also links OpenSSL's static libcrypto (libssl-dev) for DKIM's
# RSA signatures; a cross build signs RSA with BoringCrypto (build.sh says so).
RUN case "$TARGETARCH/$(dpkg --print-architecture)" in \
      arm64/amd64) pkgs="gcc-aarch64-linux-gnu libc6-dev-arm64-cross" ;; \
      amd64/arm64) pkgs="gcc-x86-64-linux-gnu libc6-dev-amd64-cross" ;; \
      *) pkgs="libssl-dev" ;; \
    esac; \
    if [ "$CRYPTO" != go ]; then apt-get update && apt-get install -y --no-install-recommends $pkgs && rm -rf /var/lib/apt/lists/*; fi
# deploy/build.sh holds the one go build command (CI runs it too).
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    GOOS=$TARGETOS GOARCH=$TARGETARCH VERSION=$VERSION CRYPTO=$CRYPTO sh deploy/build.sh /out/inkan \
 && mkdir -p /out/data && chmod 0700 /out/data

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/inkan /inkan
# The data directory (queue, users, self-signed TLS, DKIM keys, ACME cache)
# belongs to the user inkan runs as, so a fresh named volume does too.
COPY --from=build --chown=65532:65532 /out/data /var/lib/inkan
ENV INKAN_DATA_DIR=/var/lib/inkan \
    INKAN_LISTEN_SMTPS=:2465 \
    INKAN_LISTEN_SUBMISSION=:2587 \
    INKAN_LISTEN_RELAY=:2525 \
    INKAN_LISTEN_HTTP=:8025
USER 65532:65532
VOLUME ["/var/lib/inkan"]
EXPOSE 2465 2587 2525 8025
# The image has no shell or curl: inkan asks its own /readyz.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 CMD ["/inkan", "health"]
ENTRYPOINT ["/inkan"]
CMD ["serve"]
