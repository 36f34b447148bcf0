"""TLS files for the HTTP and gRPC listeners, checked at start-up.

One server certificate and key, and optionally a client CA bundle: with it, clients
must present a certificate signed by that CA (mutual TLS).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path


class TlsConfigError(ValueError):
    """The TLS files are missing or unusable; the message names the file."""


@dataclass(frozen=True, slots=True)
class TlsFiles:
    cert: Path
    key: Path
    client_ca: Path | None = None

    @property
    def mutual(self) -> bool:
        return self.client_ca is not None

    def read(self) -> tuple[bytes, bytes, bytes | None]:
        """PEM bytes of the certificate chain, the key and the client CA bundle."""
        return (
            _read(self.cert, "certificate"),
            _read(self.key, "private key"),
            _read(self.client_ca, "client CA") if self.client_ca else None,
        )

    def server_context(self) -> ssl.SSLContext:
        """An SSL context for an HTTP listener; loading it also validates the files."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            context.load_cert_chain(str(self.cert), str(self.key))
        except (OSError, ssl.SSLError) as exc:
            raise TlsConfigError(
                f"unable to load the TLS certificate {self.cert} and key {self.key}: {exc}"
            ) from None
        if self.client_ca is not None:
            try:
                context.load_verify_locations(cafile=str(self.client_ca))
            except (OSError, ssl.SSLError) as exc:
                raise TlsConfigError(
                    f"unable to load the client CA {self.client_ca}: {exc}"
                ) from None
            context.verify_mode = ssl.CERT_REQUIRED
        return context


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise TlsConfigError(f"unable to read the TLS {what} {path}: {exc}") from None
