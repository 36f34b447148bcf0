"""Naiad: serves Triton model repositories over Triton's HTTP/REST and gRPC protocols."""

__version__ = "0.1.0"
