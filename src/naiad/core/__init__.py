"""The protocol-neutral core: model lookup, validation, scheduling and the service API."""
