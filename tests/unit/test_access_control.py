"""Restricted API parsing, the access decision, and that every route and RPC is classified."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from tritonclient.grpc import service_pb2 as pb

from naiad.frontends.grpc.access import method_groups
from naiad.frontends.http import app as http_app
from naiad.frontends.http.access import classify_path
from naiad.security.access import AccessPolicy, DenialKind, TokenFileError, read_token_file
from naiad.security.restrictions import (
    GRPC_HEADER_PREFIX,
    ApiGroup,
    Restriction,
    RestrictionSpecError,
    parse_restrictions,
)


def test_parse_restrictions_like_triton() -> None:
    parsed = parse_restrictions(
        ["model-repository,health:Admin-Key=admin-value", "inference:k=v=w"], GRPC_HEADER_PREFIX
    )
    assert parsed[ApiGroup.HEALTH] == Restriction("triton-grpc-protocol-admin-key", "admin-value")
    assert parsed[ApiGroup.MODEL_REPOSITORY] == parsed[ApiGroup.HEALTH]
    assert parsed[ApiGroup.INFERENCE] == Restriction("triton-grpc-protocol-k", "v=w")
    assert ApiGroup.METADATA not in parsed


@pytest.mark.parametrize(
    ("specs", "message"),
    [
        (["model-reposit,health:k1=v1"], "unknown restricted api 'model-reposit'"),
        (
            ["model-repository,health:k1=v1", "metadata,health:k2=v2"],
            "restricted api 'health' can not be specified in multiple config groups",
        ),
        (["health"], "must have the form"),
        (["health:novalue"], "must have the form"),
        ([":k=v"], "must have the form"),
    ],
)
def test_parse_restrictions_errors(specs: list[str], message: str) -> None:
    with pytest.raises(RestrictionSpecError, match=re.escape(message)):
        parse_restrictions(specs)


def _headers(values: dict[str, list[str]]):  # type: ignore[no-untyped-def]
    return lambda name: values.get(name, [])


def test_policy_restriction_and_token() -> None:
    policy = AccessPolicy(
        {ApiGroup.INFERENCE: Restriction("infer-key", "secret")}, tokens=("t" * 16,)
    )
    token = {"authorization": ["Bearer " + "t" * 16]}
    assert policy.check(ApiGroup.METADATA, _headers(token)) is None
    denial = policy.check(ApiGroup.INFERENCE, _headers(token))
    assert denial is not None and denial.kind is DenialKind.RESTRICTED
    assert denial.message == "This API is restricted, expecting header 'infer-key'"
    assert "secret" not in denial.message
    ok = {**token, "infer-key": ["secret"]}
    assert policy.check(ApiGroup.INFERENCE, _headers(ok)) is None
    for bad in ({**token, "infer-key": ["secret", "secret"]}, {**token, "infer-key": ["Secret"]}):
        assert policy.check(ApiGroup.INFERENCE, _headers(bad)) is not None
    for auth in ([], ["Bearer wrong"], ["Basic " + "t" * 16], ["Bearer " + "t" * 16] * 2):
        denial = policy.check(ApiGroup.METADATA, _headers({"authorization": auth}))
        assert denial is not None and denial.kind is DenialKind.UNAUTHENTICATED
    # Probes need no token, but still obey a health restriction.
    assert policy.check(ApiGroup.HEALTH, _headers({}), probe=True) is None
    assert not AccessPolicy().enabled


def test_token_file(tmp_path: Path) -> None:
    path = tmp_path / "tokens"
    path.write_text("# comment\n\n" + "a" * 20 + "\n" + "b" * 32 + "\n")
    assert read_token_file(path) == ("a" * 20, "b" * 32)
    path.write_text("short\n")
    with pytest.raises(TokenFileError, match="shorter than 16"):
        read_token_file(path)
    path.write_text("\n# nothing\n")
    with pytest.raises(TokenFileError, match="no token"):
        read_token_file(path)
    with pytest.raises(TokenFileError, match="unable to read"):
        read_token_file(tmp_path / "missing")


@pytest.mark.parametrize(
    ("path", "group"),
    [
        ("/v2/health/live", ApiGroup.HEALTH),
        ("/v2/health/ready", ApiGroup.HEALTH),
        ("/v2/models/m/ready", ApiGroup.HEALTH),
        ("/v2/models/m/versions/1/ready", ApiGroup.HEALTH),
        ("/v2", ApiGroup.METADATA),
        ("/v2/models/m", ApiGroup.METADATA),
        ("/v2/models/m/versions/2", ApiGroup.METADATA),
        ("/v2/models/m/infer", ApiGroup.INFERENCE),
        ("/v2/models/m/versions/1/infer", ApiGroup.INFERENCE),
        ("/v2/models/m/generate", ApiGroup.INFERENCE),
        ("/v2/models/m/generate_stream", ApiGroup.INFERENCE),
        ("/v2/models/m/anything/else", ApiGroup.INFERENCE),
        ("/v2/models/m/config", ApiGroup.MODEL_CONFIG),
        ("/v2/models/stats", ApiGroup.STATISTICS),
        ("/v2/models/m/stats", ApiGroup.STATISTICS),
        ("/v2/models/m/versions/1/stats", ApiGroup.STATISTICS),
        ("/v2/repository/index", ApiGroup.MODEL_REPOSITORY),
        ("/v2/repository/models/m/load", ApiGroup.MODEL_REPOSITORY),
        ("/v2/repository/r/models/m/unload", ApiGroup.MODEL_REPOSITORY),
        ("/v2/systemsharedmemory/status", ApiGroup.SHARED_MEMORY),
        ("/v2/systemsharedmemory/region/r/register", ApiGroup.SHARED_MEMORY),
        ("/v2/cudasharedmemory/region/r/unregister", ApiGroup.SHARED_MEMORY),
        ("/v2/trace/setting", ApiGroup.TRACE),
        ("/v2/models/m/trace/setting", ApiGroup.TRACE),
        ("/v2/logging", ApiGroup.LOGGING),
        ("/dashboard/data", ApiGroup.STATISTICS),
        ("/metrics", None),
        ("/", None),
    ],
)
def test_every_http_route_has_its_group(path: str, group: ApiGroup | None) -> None:
    assert classify_path(path) == group


def test_app_routes_are_all_classified() -> None:
    """Any path the app's route patterns accept falls in a group (nothing escapes)."""
    samples = [
        "/v2/models/m/versions/3/infer",
        "/v2/models/m/generate",
        "/v2/repository/models/m/load",
        "/v2/systemsharedmemory/region/r/status",
        "/v2/cudasharedmemory/status",
    ]
    patterns = [p for name, p in vars(http_app).items() if name.endswith("_ROUTE")]
    assert patterns
    for sample in samples:
        if any(p.match(sample) for p in patterns):
            assert classify_path(sample) is not None


def test_every_grpc_method_has_its_group() -> None:
    groups = method_groups()
    service = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    for method in service.methods:
        assert f"/inference.GRPCInferenceService/{method.name}" in groups
    assert groups["/inference.GRPCInferenceService/ModelInfer"] is ApiGroup.INFERENCE
    assert groups["/inference.GRPCInferenceService/ModelReady"] is ApiGroup.HEALTH
    assert groups["/inference.GRPCInferenceService/LogSettings"] is ApiGroup.LOGGING
    assert groups["/inference.GRPCInferenceService/TraceSetting"] is ApiGroup.TRACE
    assert groups["/inference.GRPCInferenceService/RepositoryModelLoad"] is (
        ApiGroup.MODEL_REPOSITORY
    )
    assert groups["/grpc.health.v1.Health/Check"] is ApiGroup.HEALTH


def test_exposure_warning() -> None:
    from naiad.security.settings import exposure_warning
    from naiad.security.tls import TlsFiles

    open_policy, guarded = AccessPolicy(), AccessPolicy(tokens=("t" * 16,))
    tls = TlsFiles(Path("c"), Path("k"))
    assert exposure_warning("127.0.0.1", "HTTP", None, open_policy) is None
    assert exposure_warning("::1", "HTTP", None, open_policy) is None
    assert exposure_warning("0.0.0.0", "HTTP", tls, guarded) is None
    warning = exposure_warning("0.0.0.0", "gRPC", None, guarded)
    assert warning is not None and "without TLS" in warning
    warning = exposure_warning("10.1.2.3", "HTTP", None, open_policy)
    assert warning is not None and "TLS or access control" in warning
