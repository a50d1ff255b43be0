#!/bin/sh
# Builds the static inkan binary. The Dockerfile and .ci/deploy-check.sh both
# run this script, so the image and CI build exactly the same way.
#
#   deploy/build.sh OUTPUT
#
# VERSION (env) is stamped into `inkan version`; without it, `git describe`
# is used when the source is a git checkout, else "dev". GOOS/GOARCH from the
# environment cross-compile as usual (the Dockerfile passes Docker's
# TARGETOS/TARGETARCH). CRYPTO=go builds without BoringCrypto (see below).
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
# Crypto backend. RSA signing is most of the CPU a message costs, and Go's
# BoringCrypto (the BoringSSL FIPS module through cgo) signs RSA-2048 about
# 1.6 times as fast as pure Go here. So the release build links it, fully
# static (netgo, osusergo, external linker with -static: no libc at run
# time, the binary still runs on distroless/scratch), on linux/amd64 and
# linux/arm64. Elsewhere, or with CRYPTO=go, or without a C compiler for the
# target, it is pure Go (CGO off), with a note. `inkan version` names which.
#
# DKIM's RSA signatures go faster still through OpenSSL's libcrypto (0.40 ms
# against BoringCrypto's 0.68 for RSA-2048 here): when the target's static
# libcrypto.a is installed (Debian: libssl-dev, libssl-dev:arm64 for a cross
# build), the BoringCrypto build links it too (tag inkan_openssl) and signs
# RSA with it; TLS stays with BoringCrypto. OPENSSL=no leaves it out. The
# linker's warnings about dlopen/getaddrinfo in a static binary concern
# OpenSSL code inkan never calls (engines, BIO sockets; the host's
# openssl.cnf is not read).
goos=${GOOS:-$(go env GOOS)}
goarch=${GOARCH:-$(go env GOARCH)}
crypto=${CRYPTO:-boring}
cc=${CC:-}
if [ "$crypto" = boring ]; then
	case $goos/$goarch in
	linux/amd64 | linux/arm64)
		if [ -z "$cc" ] && [ "$goarch" != "$(go env GOHOSTARCH)" ]; then
			cc=$(command -v "$( [ "$goarch" = arm64 ] && echo aarch64 || echo x86_64)-linux-gnu-gcc" || true)
		fi
		if [ -z "$cc" ]; then
			cc=$(command -v gcc || command -v cc || true)
			[ "$goarch" = "$(go env GOHOSTARCH)" ] || cc=
		fi
		if [ -z "$cc" ]; then
			echo "build.sh: no C compiler for $goos/$goarch: building with pure-Go crypto (install gcc, or a cross gcc, for BoringCrypto)" >&2
			crypto=go
		fi
		;;
	*)
		echo "build.sh: BoringCrypto is built for linux/amd64 and linux/arm64 only: $goos/$goarch gets pure-Go crypto" >&2
		crypto=go
		;;
	esac
fi
tags=netgo,osusergo
if [ "$crypto" = boring ] && [ "${OPENSSL:-yes}" != no ]; then
	lib=$("$cc" -print-file-name=libcrypto.a 2>/dev/null || true)
	if [ -f "$lib" ]; then
		tags=$tags,inkan_openssl
	else
		echo "build.sh: no static libcrypto for $goos/$goarch (libssl-dev): DKIM RSA signs with BoringCrypto" >&2
	fi
fi
case $crypto in
boring)
	# -trimpath and -s -w: reproducible paths, no symbol tables.
	CC=$cc CGO_ENABLED=1 GOEXPERIMENT=boringcrypto exec go build -trimpath -tags $tags \
		-ldflags "-s -w -X main.version=$version -linkmode external -extldflags -static" -o "$out" ./cmd/inkan
	;;
go)
	CGO_ENABLED=0 exec go build -trimpath -ldflags "-s -w -X main.version=$version" -o "$out" ./cmd/inkan
	;;
*)
	echo "build.sh: CRYPTO must be boring or go (got '$crypto')" >&2
	exit 2
	;;
esac
