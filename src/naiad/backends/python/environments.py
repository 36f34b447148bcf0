"""Which Python runs a model's workers: the server's own, or the model's environment.

* ``parameters { key: "EXECUTION_ENV_PATH" ... }`` (Triton's): a conda-pack style
  tarball, unpacked once into the cache, or an unpacked environment directory;
  ``$$TRITON_MODEL_DIRECTORY`` stands for the model directory and must not lead out
  of it. The worker runs that environment's ``bin/python``.
* Beyond Triton, a ``requirements.txt`` in the model directory: installed once into
  a virtual environment cached by the file's hash (pip's output goes to the server
  log as it runs). The environment also sees the server's packages (numpy, ...),
  after its own.

The cache is ``$NAIAD_CACHE_DIR``, else ``$XDG_CACHE_HOME/naiad``, else ``~/.cache/naiad``.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import shutil
import site
import subprocess
import sys
import tarfile
from collections import deque
from collections.abc import Iterator
from pathlib import Path

from tritonclient.grpc import model_config_pb2 as mc

from naiad.backends.python.worker_process import Interpreter
from naiad.errors import ModelConfigError, ModelLoadError

logger = logging.getLogger("naiad.python")

EXECUTION_ENV_PATH = "EXECUTION_ENV_PATH"
MODEL_DIRECTORY_PLACEHOLDER = "$$TRITON_MODEL_DIRECTORY"
REQUIREMENTS_FILE = "requirements.txt"
_DONE_MARKER = ".naiad-ready"


def cache_dir() -> Path:
    configured = os.environ.get("NAIAD_CACHE_DIR")
    if configured:
        return Path(configured)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "naiad"


def model_interpreter(config: mc.ModelConfig, model_dir: Path, label: str) -> Interpreter:
    requirements = model_dir / REQUIREMENTS_FILE
    if EXECUTION_ENV_PATH in config.parameters:
        if requirements.is_file():
            logger.warning("%s: %s is ignored: EXECUTION_ENV_PATH is set", label, requirements)
        value = config.parameters[EXECUTION_ENV_PATH].string_value
        return execution_environment(value, model_dir, label)
    if requirements.is_file():
        return requirements_environment(requirements, model_dir, label)
    return Interpreter(sys.executable)


def execution_environment(value: str, model_dir: Path, label: str) -> Interpreter:
    if MODEL_DIRECTORY_PLACEHOLDER in value:
        path = Path(value.replace(MODEL_DIRECTORY_PLACEHOLDER, str(model_dir)))
        if not path.resolve().is_relative_to(model_dir.resolve()):
            raise ModelConfigError(
                f"{label}: EXECUTION_ENV_PATH '{value}' leads out of the model directory"
            )
    else:
        path = Path(value)
    if not path.exists():
        raise ModelLoadError(f"{label}: EXECUTION_ENV_PATH '{path}' does not exist")
    env_dir = path if path.is_dir() else unpack_environment(path, label)
    python = next(
        (p for p in (env_dir / "bin/python3", env_dir / "bin/python") if p.exists()), None
    )
    if python is None:
        raise ModelLoadError(
            f"{label}: the execution environment {path} has no bin/python3 or bin/python"
        )
    return Interpreter(
        str(python),
        {
            "PATH": f"{env_dir / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
            "LD_LIBRARY_PATH": f"{env_dir / 'lib'}{os.pathsep}{os.environ.get('LD_LIBRARY_PATH', '')}",
            "CONDA_PREFIX": str(env_dir),
        },
        f"execution environment {path}",
    )


def unpack_environment(archive: Path, label: str) -> Path:
    """Unpack a conda-pack tarball once (keyed by its path, size and time); return the dir."""
    stat = archive.stat()
    key = _digest(f"{archive.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode())
    target = cache_dir() / "envs" / key
    with _exclusive(target):
        if (target / _DONE_MARKER).exists():
            return target
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        logger.info("%s: unpacking execution environment %s into %s", label, archive, target)
        try:
            with tarfile.open(archive) as tar:
                # The "tar" filter keeps every member inside the target directory.
                tar.extractall(target, filter="tar")
        except (tarfile.TarError, OSError) as exc:
            raise ModelLoadError(f"{label}: cannot unpack {archive}: {exc}") from None
        (target / _DONE_MARKER).touch()
    return target


def requirements_environment(requirements: Path, model_dir: Path, label: str) -> Interpreter:
    """A virtual environment with ``requirements.txt`` installed, built once per content."""
    content = requirements.read_bytes()
    parents = _server_site_dirs()
    key = _digest(content + sys.version.encode() + "|".join(parents).encode())
    target = cache_dir() / "venvs" / key
    python = target / "bin" / "python"
    description = f"virtual environment {target} for {requirements}"
    with _exclusive(target):
        if (target / _DONE_MARKER).exists():
            logger.info("%s: using the cached %s", label, description)
            return Interpreter(str(python), {}, description)
        shutil.rmtree(target, ignore_errors=True)
        logger.info("%s: building %s (once; cached by the file's hash)", label, description)
        _run_logged([sys.executable, "-m", "venv", "--without-pip", str(target)], label, model_dir)
        _inherit_server_packages(python, parents)
        _run_logged(
            [
                sys.executable,
                "-m",
                "pip",
                "--python",
                str(python),
                "install",
                "--disable-pip-version-check",
                "--no-input",
                "--progress-bar",
                "off",
                "-r",
                str(requirements.resolve()),
            ],
            label,
            model_dir,
        )
        (target / _DONE_MARKER).write_bytes(content)
        logger.info("%s: %s is ready", label, description)
    return Interpreter(str(python), {}, description)


def _server_site_dirs() -> list[str]:
    return [p for p in site.getsitepackages() if Path(p).is_dir()]


def _inherit_server_packages(python: Path, parents: list[str]) -> None:
    """Let the environment import the server's packages after its own (numpy, ...)."""
    query = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    purelib = subprocess.run(
        [str(python), "-c", query], capture_output=True, text=True, check=True
    ).stdout.strip()
    lines = [f"import site; site.addsitedir({parent!r})" for parent in parents]
    (Path(purelib) / "_naiad_server_packages.pth").write_text("\n".join(lines) + "\n")


def _run_logged(command: list[str], label: str, cwd: Path) -> None:
    """Run ``command``, logging each line of its output as it comes (no shell)."""
    tail: deque[str] = deque(maxlen=20)
    name = Path(command[2] if command[1] == "-m" else command[0]).name
    try:
        process = subprocess.Popen(
            command,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
    except OSError as exc:
        raise ModelLoadError(f"{label}: cannot run {command[0]}: {exc}") from None
    assert process.stdout is not None
    with process.stdout:
        for line in process.stdout:
            line = line.rstrip()
            if line:
                tail.append(line)
                logger.info("%s: %s: %s", label, name, line)
    code = process.wait()
    if code != 0:
        raise ModelLoadError(
            f"{label}: '{' '.join(command[1:4])} ...' failed with exit code {code}: "
            + " | ".join(tail)
        )


@contextlib.contextmanager
def _exclusive(target: Path) -> Iterator[None]:
    """One builder per cache entry, across threads and server processes."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        handle = open(target.with_name(target.name + ".lock"), "w")  # noqa: SIM115
    except OSError as exc:
        raise ModelLoadError(f"cannot use the cache directory {target.parent}: {exc}") from None
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:20]
