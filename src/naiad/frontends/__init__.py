"""Frontends: translate HTTP/REST and gRPC wire messages to and from the core service."""
