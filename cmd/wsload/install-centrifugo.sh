#!/bin/sh
# Installs the Centrifugo server that `wsload run -kinds ...,centrifugo` compares
# against: built from source through the Go module proxy into $(go env GOPATH)/bin
# (or $GOBIN), outside wsactor's module, so wsactor's go.mod never depends on it
# and no binary is committed. It compiles for ~3 minutes on 2 cores; on a shared
# machine run it under the benchmark lock:
#
#	flock /work/helpers/bench.lock sh cmd/wsload/install-centrifugo.sh
#
# wsload finds the binary with -centrifugo, else on $PATH, else in
# $(go env GOPATH)/bin.
set -eu
version=${CENTRIFUGO_VERSION:-v6.9.1}
# go install pkg@version builds in module-aware mode outside any module:
# the current directory's go.mod is not read or written.
cd "${TMPDIR:-/tmp}"
GOFLAGS=-buildvcs=false go install "github.com/centrifugal/centrifugo/v6@${version}"
bin=$(go env GOBIN)
[ -n "$bin" ] || bin=$(go env GOPATH)/bin
"$bin/centrifugo" version
