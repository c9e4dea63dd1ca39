#!/usr/bin/env bash
# Regenerates Sources/StrataProto from proto/strata/v1/*.proto.
# Needs protoc (Debian: protobuf-compiler) and builds protoc-gen-swift from the
# swift-protobuf version this package depends on (the first build takes ~10
# minutes; it is cached in .build-protoc). The generated files are committed:
# a normal build never runs this.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v protoc >/dev/null; then
  apt-get update -qq && apt-get install -y -qq protobuf-compiler
fi
swift build -c release --product protoc-gen-swift --scratch-path .build-protoc
plugin=".build-protoc/release/protoc-gen-swift"
out="Sources/StrataProto"
rm -f "$out"/*.pb.swift
protoc --plugin=protoc-gen-swift="$plugin" \
  --swift_out="$out" --swift_opt=Visibility=Public --swift_opt=FileNaming=PathToUnderscores \
  -I proto proto/strata/v1/*.proto
echo "generated: $(ls "$out"/*.pb.swift | tr '\n' ' ')"
