#!/usr/bin/env bash
# Builds and runs a broker on its embedded defaults (README's first command).
# The build needs protoc (the etcd client's gRPC code is generated at build
# time); it is installed here when missing. Extra arguments go to
# `sediment serve`.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v protoc >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1; then
    echo "installing protobuf-compiler (protoc) for the build"
    sudo_if_needed=""
    [ "$(id -u)" -ne 0 ] && sudo_if_needed="sudo"
    $sudo_if_needed apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_if_needed apt-get install -y -qq protobuf-compiler >/dev/null
  elif command -v brew >/dev/null 2>&1; then
    brew install protobuf
  else
    echo "sediment: the build needs protoc; install the protobuf compiler and run this again" >&2
    exit 1
  fi
fi
exec cargo run --release -- serve "$@"
