#!/bin/sh
# Builds the static inkan binary. The Dockerfile and .ci/deploy-check.sh both
# run this script, so the image and CI build exactly the same way.
#
#   deploy/build.sh OUTPUT
#
# VERSION (env) is stamped into `inkan version`; without it, `git describe`
# is used when the source is a git checkout, else "dev". GOOS/GOARCH from the
# environment cross-compile as usual (the Dockerfile passes Docker's
# TARGETOS/TARGETARCH).
set -eu
out=${1:?usage: deploy/build.sh OUTPUT}
case $out in
/*) ;;
*) out=$(pwd)/$out ;;
esac
cd "$(dirname "$0")/.."
version=${VERSION:-}
if [ -z "$version" ]; then
	version=$(git describe --tags --always --dirty 2>/dev/null || true)
	version=${version:-dev}
fi
case $version in
*[!A-Za-z0-9._+-]*)
	echo "build.sh: VERSION may hold only letters, digits and . _ + - (got '$version')" >&2
	exit 2
	;;
esac
# CGO off: no libc, so the binary runs on distroless/scratch and any Linux.
# -trimpath and -s -w: reproducible paths, no symbol tables.
CGO_ENABLED=0 exec go build -trimpath -ldflags "-s -w -X main.version=$version" -o "$out" ./cmd/inkan
