"""The one access decision both frontends make: bearer token, then restricted API group.

A frontend classifies a request into an :class:`ApiGroup` (its route table or RPC name),
collects the values of the headers the policy asks about, and calls
:meth:`AccessPolicy.check`; a :class:`Denial` says what to answer. Secrets are compared
in constant time and never appear in a denial.

Liveness and readiness probes (``/v2/health/live``, ``/v2/health/ready``, gRPC
``ServerLive``/``ServerReady`` and ``grpc.health.v1.Health/Check``) need no bearer token:
they reveal one boolean, and orchestrators probe them without credentials. They still
obey ``--*-restricted-api=health:...`` like in Triton.
"""

from __future__ import annotations

import enum
import hmac
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from naiad.security.restrictions import ApiGroup, Restriction

AUTHORIZATION = "authorization"
_BEARER = "bearer "

# All values of one header in a request; empty when the request did not send it.
HeaderValues = Callable[[str], Sequence[str]]


class DenialKind(enum.Enum):
    UNAUTHENTICATED = "unauthenticated"  # HTTP 401, gRPC UNAUTHENTICATED
    RESTRICTED = "restricted"  # HTTP 403, gRPC PERMISSION_DENIED


@dataclass(frozen=True, slots=True)
class Denial:
    kind: DenialKind
    message: str


class TokenFileError(ValueError):
    """The token file cannot be used; the message says why (never what it holds)."""


def read_token_file(path: Path) -> tuple[str, ...]:
    """Tokens from ``path``: one per line; blank lines and ``#`` comments are skipped."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TokenFileError(f"unable to read the auth token file {path}: {exc}") from None
    tokens = tuple(
        line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")
    )
    if not tokens:
        raise TokenFileError(f"the auth token file {path} holds no token")
    short = [t for t in tokens if len(t) < 16]
    if short:
        raise TokenFileError(f"the auth token file {path} holds a token shorter than 16 characters")
    return tokens


def _equal(given: str, expected: str) -> bool:
    # hmac.compare_digest takes time independent of where the values differ.
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


class AccessPolicy:
    """Restrictions per API group plus optional bearer tokens, for one frontend.

    ``noun`` is how the frontend names what is restricted in its refusal ("API" for
    HTTP, "protocol" for gRPC, as Triton words them).
    """

    def __init__(
        self,
        restrictions: Mapping[ApiGroup, Restriction] | None = None,
        tokens: Sequence[str] = (),
        noun: str = "API",
    ) -> None:
        self.restrictions = dict(restrictions or {})
        self.tokens = tuple(tokens)
        self.noun = noun

    @property
    def enabled(self) -> bool:
        return bool(self.restrictions or self.tokens)

    def check(
        self, group: ApiGroup | None, headers: HeaderValues, probe: bool = False
    ) -> Denial | None:
        """``None`` when the request may go on, else why it may not."""
        if self.tokens and not probe and not self._token_ok(headers(AUTHORIZATION)):
            return Denial(
                DenialKind.UNAUTHENTICATED,
                "missing or invalid bearer token: send the header 'Authorization: Bearer <token>'",
            )
        restriction = self.restrictions.get(group) if group is not None else None
        if restriction is not None:
            values = headers(restriction.header)
            # Exactly one value: a repeated header is refused rather than guessed at.
            if len(values) != 1 or not _equal(values[0], restriction.value):
                return Denial(
                    DenialKind.RESTRICTED,
                    f"This {self.noun} is restricted, expecting header '{restriction.header}'",
                )
        return None

    def _token_ok(self, values: Sequence[str]) -> bool:
        if len(values) != 1 or values[0][: len(_BEARER)].lower() != _BEARER:
            return False
        given = values[0][len(_BEARER) :].strip()
        ok = False
        for token in self.tokens:  # no early exit: every token is compared
            ok |= _equal(given, token)
        return ok
