// Package wire defines the protobuf messages wsactor sends between nodes.
//
// wire.pb.go is generated and committed; regenerate it with `go generate
// ./internal/wire/` (needs protoc, Debian's protobuf-compiler, and
// protoc-gen-go: go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12).
package wire

//go:generate protoc --go_out=. --go_opt=paths=source_relative wire.proto rooms.proto
