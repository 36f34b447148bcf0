"""Remote repository addresses, object key checks, cache placement and the local copy's
bookkeeping (everything that needs no S3 server; the syncs themselves are e2e tests)."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import pytest

from naiad.cli import build_parser, settings_from_args
from naiad.errors import InvalidArgumentError, UnsupportedError
from naiad.repository.remote import CachedObject, RemoteRepository, RepositoryRoots
from naiad.repository.remote_paths import (
    S3Location,
    UnsafeObjectKeyError,
    cache_dir_for,
    default_cache_root,
    inside,
    is_remote,
    object_path,
    parse_remote,
)


@pytest.mark.parametrize(
    ("root", "expected"),
    [
        ("s3://bucket/path/to/models", S3Location("bucket", "path/to/models")),
        ("s3://bucket", S3Location("bucket", "")),
        ("s3://bucket//a///b/", S3Location("bucket", "a/b")),  # slashes cleaned as Triton
        (
            "s3://minio.local:9000/bucket/models",
            S3Location("bucket", "models", "http://minio.local:9000"),
        ),
        (
            "s3://https://s3.example.com:443/bucket/models",
            S3Location("bucket", "models", "https://s3.example.com:443"),
        ),
        ("s3://http://10.0.0.1/bucket", S3Location("bucket", "", "http://10.0.0.1")),
    ],
)
def test_s3_forms_triton_accepts(root: str, expected: S3Location) -> None:
    assert is_remote(root)
    assert parse_remote(root) == expected


def test_list_prefix_does_not_match_sibling_prefixes() -> None:
    assert parse_remote("s3://b/models").list_prefix == "models/"
    assert parse_remote("s3://b").list_prefix == ""


@pytest.mark.parametrize(
    "root", ["s3://", "s3://host:9000/", "s3://host:port/bucket", "s3://b/../x", "s3://b!/x"]
)
def test_malformed_s3_addresses_are_refused(root: str) -> None:
    with pytest.raises(InvalidArgumentError):
        parse_remote(root)


@pytest.mark.parametrize(
    ("root", "text"),
    [
        ("gs://bucket/models", "Google Cloud Storage (gs://) is not supported"),
        ("as://account/container", "Azure Storage (as://) is not supported"),
        ("https://example.com/models", "unsupported scheme 'https://'"),
    ],
)
def test_other_schemes_are_unsupported(root: str, text: str) -> None:
    with pytest.raises(UnsupportedError, match=text.replace("(", r"\(").replace(")", r"\)")):
        parse_remote(root)


def test_local_paths_are_not_remote() -> None:
    assert not is_remote("/srv/models")
    assert not is_remote("relative/models")
    assert not is_remote(Path("/srv/models"))


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("simple/config.pbtxt", PurePosixPath("simple/config.pbtxt")),
        ("simple/1/model.onnx", PurePosixPath("simple/1/model.onnx")),
        ("a..b/..c/d..", PurePosixPath("a..b/..c/d..")),  # dots inside names are fine
    ],
)
def test_object_keys_map_to_relative_paths(key: str, expected: PurePosixPath) -> None:
    assert object_path(key) == expected


@pytest.mark.parametrize(
    "key",
    [
        "",
        "../x",
        "a/../../x",
        "a/..",
        "./a",
        "/etc/passwd",
        "//x",
        "a//b",
        "a\\..\\..\\x",
        "a/\x00b",
        "a/\nb",
        "a/" + "x" * 256,
    ],
)
def test_unsafe_object_keys_are_refused(key: str) -> None:
    with pytest.raises(UnsafeObjectKeyError):
        object_path(key)


def test_a_symlink_in_the_copy_cannot_lead_outside(tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    copy.mkdir()
    (copy / "model").symlink_to(tmp_path)
    assert inside(copy, PurePosixPath("other/file")) == copy / "other" / "file"
    with pytest.raises(UnsafeObjectKeyError):
        inside(copy, PurePosixPath("model/escape"))


def test_cache_root_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("TRITON_AWS_MOUNT_DIRECTORY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert default_cache_root() == tmp_path / "home" / ".cache" / "naiad" / "remote"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/ignored")
    assert default_cache_root() == tmp_path / "home" / ".cache" / "naiad" / "remote"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_root() == tmp_path / "xdg" / "naiad" / "remote"
    monkeypatch.setenv("TRITON_AWS_MOUNT_DIRECTORY", str(tmp_path / "mount"))
    assert default_cache_root() == tmp_path / "mount"


def test_each_repository_gets_its_own_stable_cache_dir(tmp_path: Path) -> None:
    aws = cache_dir_for(parse_remote("s3://bucket/models"), tmp_path)
    assert aws == cache_dir_for(parse_remote("s3://bucket//models/"), tmp_path)
    minio = cache_dir_for(parse_remote("s3://minio:9000/bucket/models"), tmp_path)
    # The default protocol of the endpoint form is http, so these are one store.
    assert minio == cache_dir_for(parse_remote("s3://http://minio:9000/bucket/models"), tmp_path)
    other = cache_dir_for(parse_remote("s3://bucket/models2"), tmp_path)
    assert len({aws, minio, other}) == 3
    assert all(d.parent == tmp_path and d.name.startswith("bucket-") for d in (aws, minio))


def test_cli_keeps_s3_addresses_and_local_paths() -> None:
    args = build_parser().parse_args(
        [
            "serve",
            "--model-repository=s3://minio:9000/bucket/models",
            "--model-repository=/srv/models",
            "--remote-cache-dir=/var/cache/naiad",
        ]
    )
    settings = settings_from_args(args)
    assert settings.model_repositories == ["s3://minio:9000/bucket/models", "/srv/models"]
    assert settings.remote_cache_dir == Path("/var/cache/naiad")


def test_cli_refuses_gs_before_starting(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(["serve", "--model-repository=gs://bucket/models"])
    assert exited.value.code == 2
    assert "Google Cloud Storage (gs://) is not supported" in capsys.readouterr().err


def test_roots_keep_their_order_with_remote_ones_as_local_copies(tmp_path: Path) -> None:
    roots = RepositoryRoots(["/srv/a", "s3://bucket/models", Path("/srv/b")], tmp_path)
    [remote] = roots.remote
    assert roots.local_paths == [Path("/srv/a"), remote.local_dir, Path("/srv/b")]
    assert remote.local_dir.parent.parent == tmp_path


def test_manifest_round_trip_and_garbage(tmp_path: Path) -> None:
    repository = RemoteRepository("s3://bucket/models", tmp_path)
    repository.cache_dir.mkdir(parents=True)
    state = {"simple/config.pbtxt": CachedObject('"abc"', 12, "v1")}
    repository._write_manifest(state)
    assert repository._read_manifest() == state
    # Another address's manifest, or an unreadable one, trusts nothing.
    other = RemoteRepository("s3://bucket/other", tmp_path)
    other.cache_dir.mkdir(parents=True)
    other.manifest_path.write_bytes(repository.manifest_path.read_bytes())
    assert other._read_manifest() == {}
    repository.manifest_path.write_text("{not json")
    assert repository._read_manifest() == {}


def test_prune_removes_unlisted_files_links_and_empty_folders(tmp_path: Path) -> None:
    repository = RemoteRepository("s3://bucket/models", tmp_path / "cache")
    local = repository.local_dir
    (local / "simple" / "1").mkdir(parents=True)
    (local / "simple" / "config.pbtxt").write_text("kept")
    (local / "simple" / "1" / "model.onnx").write_text("gone")
    (local / "simple" / "link").symlink_to(tmp_path / "outside")
    (tmp_path / "outside").write_text("untouched")
    removed = repository._prune({"simple/config.pbtxt", "simple/link"})
    assert removed == 2
    assert sorted(p.relative_to(local).as_posix() for p in local.rglob("*")) == [
        "simple",
        "simple/config.pbtxt",
    ]
    assert (tmp_path / "outside").read_text() == "untouched"
