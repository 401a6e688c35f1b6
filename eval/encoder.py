"""The E5 encoder: a transformers model behind MTEB's encoder protocol.

Each text gets the prefix that :mod:`eval.prefixes` assigns, is truncated to
``max_length`` tokens and goes through the model. The last hidden states are
pooled over the attention mask and, where the task calls for it, L2-normalised.
"""

from __future__ import annotations

import hashlib
import logging
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Sequence

import numpy as np
import torch
from mteb.models.abs_encoder import AbsEncoder
from mteb.models.model_meta import ModelMeta, ScoringFunction
from tqdm.auto import tqdm

from eval import checkpoint as checkpoint_module
from eval import cpu_linear, prefixes
from eval.config import ConfigError
from eval.checkpoint import (
    CheckpointError,
    CheckpointInfo,
    count_parameters,
    load_config,
    load_model,
    load_tokenizer,
    resolve_checkpoint,
)
from eval.embedding_cache import EmbeddingCache

if TYPE_CHECKING:
    from mteb.abstasks.task_metadata import TaskMetadata
    from mteb.types import BatchedInput, PromptType
    from torch.utils.data import DataLoader
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from eval.config import ModelConfig

logger = logging.getLogger(__name__)

TORCH_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
DEFAULT_CHUNK_SIZE = 4096
# A NaN error names at most this many of the texts involved.
NAMED_TEXTS = 3
# Requested when the weights are loaded; transformers' choice is kept for
# architectures without it.
ATTN_IMPLEMENTATION = "sdpa"


class NonFiniteEmbeddingError(FloatingPointError):
    """The model produced NaN or infinite embeddings; the message names the texts involved."""


class EncodingOutOfMemoryError(RuntimeError):
    """A single text does not fit in accelerator memory even at batch size 1."""


def mean_pooling(last_hidden_state: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Average token states over the attention mask: (batch, tokens, dim) -> (batch, dim)."""
    mask = attention_mask.unsqueeze(-1).to(last_hidden_state.dtype)
    summed = (last_hidden_state * mask).sum(dim=1)
    counts = mask.sum(dim=1).clamp(min=1e-9)
    return summed / counts


def cls_pooling(last_hidden_state: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Take the first token's state: (batch, tokens, dim) -> (batch, dim)."""
    return last_hidden_state[:, 0]


POOLING = {"mean": mean_pooling, "cls": cls_pooling}


# Padded tokens per batch on a CPU: attention's (batch, heads, tokens, tokens)
# scores stay cache-sized. all-MiniLM-L6-v2 on SciFact ran 14% faster at 4,096
# than at 16,384 on the 2-core development machine (docs/BENCHMARKS.md).
CPU_BATCH_TOKENS = 4096


def _default_batch_tokens(device: torch.device, model_cfg: "ModelConfig") -> int:
    if device.type == "cpu":
        return CPU_BATCH_TOKENS
    return model_cfg.batch_size * model_cfg.max_length


def select_device(requested: str) -> torch.device:
    """Return the device for ``auto`` (cuda, then mps, then cpu) or check the requested one.

    Raises:
        ConfigError: the requested accelerator is not available.
    """
    if requested == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        raise ConfigError("model.device=cuda was requested but torch sees no CUDA device; use model.device=auto or cpu")
    if requested == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("model.device=mps was requested but MPS is not available; use model.device=auto or cpu")
    return torch.device(requested)


def select_dtype(requested: str, device: torch.device) -> torch.dtype:
    """Return the torch dtype for the weights.

    bfloat16 runs on the CPU too: on CPUs with AMX or AVX512-BF16 it encodes
    about three times faster than float32, and its scores differ slightly
    (docs/BENCHMARKS.md gives the measured drift).

    Raises:
        ConfigError: float16 requested on the CPU.
    """
    dtype = TORCH_DTYPES[requested]
    if device.type != "cpu" or dtype == torch.float32:
        return dtype
    if dtype == torch.float16:
        raise ConfigError(
            "model.dtype=float16 is only supported on a GPU; on the CPU use model.dtype=float32, or "
            "model.dtype=bfloat16 for speed at slightly different scores"
        )
    if not cpu_has_native_bf16():
        logger.warning(
            "model.dtype=bfloat16: this CPU reports neither AMX nor AVX512-BF16, so bfloat16 is emulated "
            "and slower than float32; use model.dtype=float32"
        )
    return dtype


def keep_freed_memory() -> bool:
    """Ask glibc's allocator to keep freed memory in the process instead of returning it.

    Every forward pass allocates and frees activations of tens of MB. By
    default glibc hands such blocks back to the kernel and takes them again
    on the next batch, and the page faults cost about 10% of CPU encoding
    time (measured on SciFact with MiniLM: 9,000 against 10,000 tokens/s).
    This is what the ``MALLOC_TRIM_THRESHOLD_``, ``MALLOC_TOP_PAD_`` and
    ``MALLOC_MMAP_THRESHOLD_`` variables do, set from inside the process
    because they must be in place before Python starts. Returns False where
    the C library is not glibc.
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_top_pad, m_mmap_threshold = -1, -2, -3
    settings = ((m_mmap_threshold, 32 << 20), (m_trim_threshold, 256 << 20), (m_top_pad, 64 << 20))
    return all(mallopt(option, value) == 1 for option, value in settings)


def cpu_has_native_bf16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Report whether the CPU flags in ``cpuinfo`` include amx_bf16 or avx512_bf16; False where unreadable."""
    try:
        text = cpuinfo.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    flags = set()
    for line in text.splitlines():
        if line.startswith("flags"):
            flags.update(line.partition(":")[2].split())
            break
    return bool(flags & {"amx_bf16", "avx512_bf16"})


@dataclass
class EncodeStats:
    """Counts and prefixes gathered while encoding, reported in the results record."""

    texts: int = 0
    unique_texts: int = 0
    truncated: int = 0
    tokens: int = 0
    prefixes: dict[str, str] = field(default_factory=dict)
    prompt_type_counts: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    chunks_reused: int = 0
    chunks_encoded: int = 0
    out_of_memory_retries: int = 0


class E5Encoder(AbsEncoder):
    """E5-style sentence encoder implementing MTEB's ``EncoderProtocol``.

    Args:
        model_cfg: checkpoint location, pooling, normalisation, max_length and batching.
        prefix_scheme: ``e5``, ``e5-instruct``, ``mteb`` or ``none`` (see :mod:`eval.prefixes`).
        cache_dir: folder of the embedding cache that makes encoding resumable; None turns it off.
        chunk_size: texts per stored chunk, rounded up to a multiple of the batch size.
    """

    def __init__(
        self,
        model_cfg: "ModelConfig",
        prefix_scheme: Optional[str] = None,
        *,
        cache_dir: Optional[Path] = None,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
    ) -> None:
        self.model_cfg = model_cfg
        self.prefix_scheme = prefix_scheme or model_cfg.prefix_scheme
        self.device = select_device(model_cfg.device)
        self.dtype = select_dtype(model_cfg.dtype, self.device)

        self.checkpoint: CheckpointInfo = resolve_checkpoint(model_cfg)
        # The weights and the tokenizer load on first use: a run whose
        # embeddings are all in the cache needs neither.
        self.config = load_config(self.checkpoint, trust_remote_code=model_cfg.trust_remote_code)
        self._model: Optional["PreTrainedModel"] = None
        self._tokenizer: Optional["PreTrainedTokenizerBase"] = None
        self.attn_implementation = ATTN_IMPLEMENTATION
        # Planned from the settings; _load_model falls back to the model's own
        # layers if the packed ones cannot be used.
        self.linear_kernel = self._planned_linear_kernel()

        self.max_length = min(model_cfg.max_length, self._model_max_positions())
        if self.max_length < model_cfg.max_length:
            logger.warning(
                "model.max_length=%d exceeds the %d positions of %s; texts are truncated at %d tokens",
                model_cfg.max_length,
                self.max_length,
                self.checkpoint.model_id,
                self.max_length,
            )
        self.pool = POOLING[model_cfg.pooling]
        self.stats = EncodeStats()

        # The batch size in force; halved for the rest of the run after an out-of-memory error.
        self.batch_size = model_cfg.batch_size
        # Padded tokens per forward pass; long texts get smaller batches.
        self.max_batch_tokens = model_cfg.max_batch_tokens or _default_batch_tokens(self.device, model_cfg)
        # Texts per cached chunk, rounded up to whole batches. Batches are formed
        # inside a chunk, so a cached chunk and a fresh encode of it pad identically.
        self.chunk_size = -(-max(chunk_size, 1) // self.batch_size) * self.batch_size
        self.cache = EmbeddingCache(cache_dir, self.fingerprint()) if cache_dir is not None else None

        self.mteb_model_meta = self._model_meta()
        logger.info(
            "Loaded %s (revision %s) on %s in %s; pooling=%s, max_length=%d, prefix scheme %s",
            self.checkpoint.model_id,
            self.checkpoint.revision,
            self.device,
            self.effective_dtype,
            model_cfg.pooling,
            self.max_length,
            self.prefix_scheme,
        )

    @property
    def model(self) -> "PreTrainedModel":
        """The transformers encoder, loaded on first access."""
        self.load_weights()
        assert self._model is not None
        return self._model

    @model.setter
    def model(self, model: "PreTrainedModel") -> None:
        self._model = model

    def load_weights(self) -> None:
        """Load the weights now rather than at the first text to encode; a no-op once loaded.

        Raises:
            CheckpointError: the weights file cannot be read or loads in another dtype.
        """
        if self._model is None:
            self._model = self._load_model()

    @property
    def tokenizer(self) -> "PreTrainedTokenizerBase":
        """The checkpoint's tokenizer, loaded on first access."""
        if self._tokenizer is None:
            self._tokenizer = load_tokenizer(self.checkpoint, trust_remote_code=self.model_cfg.trust_remote_code)
        return self._tokenizer

    @tokenizer.setter
    def tokenizer(self, tokenizer: "PreTrainedTokenizerBase") -> None:
        self._tokenizer = tokenizer

    @property
    def hidden_size(self) -> int:
        """The embedding dimension, read from the checkpoint's config."""
        return int(self.config.hidden_size)

    @property
    def model_loaded(self) -> bool:
        """Whether the weights were loaded; a fully cached run never loads them."""
        return self._model is not None

    @property
    def effective_dtype(self) -> str:
        """The dtype of the weights: read back from the model once it is loaded.

        Before loading it is the requested dtype, which :meth:`_load_model`
        checks against the loaded weights.
        """
        if self._model is None:
            return str(self.dtype).removeprefix("torch.")
        return str(next(self._model.parameters()).dtype).removeprefix("torch.")

    def _load_model(self) -> "PreTrainedModel":
        """Load the weights and check them against what the cache fingerprint promised.

        Raises:
            CheckpointError: transformers loaded the weights in another dtype than requested.
        """
        if self.device.type == "cpu" and not keep_freed_memory():
            logger.debug("mallopt is not available; freed activations go back to the kernel")
        model = load_model(
            self.checkpoint,
            dtype=self.dtype,
            device=self.device,
            trust_remote_code=self.model_cfg.trust_remote_code,
            attn_implementation=self.attn_implementation,
        )
        loaded_dtype = next(model.parameters()).dtype
        if loaded_dtype != self.dtype:
            raise CheckpointError(
                f"checkpoint {self.checkpoint.model_id} loaded in {loaded_dtype} although {self.dtype} was "
                f"requested; set model.dtype to {str(loaded_dtype).removeprefix('torch.')}"
            )
        planned = (self.attn_implementation, self.linear_kernel)
        self.attn_implementation = getattr(model.config, "_attn_implementation", None)
        if self.linear_kernel == cpu_linear.ONEDNN_KERNEL:
            reason = cpu_linear.pack_linear_layers(model)
            if reason is not None:
                logger.info("Keeping the model's own linear layers: %s", reason)
                self.linear_kernel = cpu_linear.TORCH_KERNEL
        if (self.attn_implementation, self.linear_kernel) != planned and self.cache is not None:
            # The fingerprint named the planned attention and linear layers, but
            # embeddings belong in the folder of the kernels that really run.
            self.cache = EmbeddingCache(self.cache.folder.parent, self.fingerprint())
        logger.info(
            "Loaded the weights of %s (%s attention, %s linear layers)", self.checkpoint.model_id, self.attn_implementation, self.linear_kernel
        )
        return model

    def _planned_linear_kernel(self) -> str:
        """Pick oneDNN's packed linear layers for float32 on the CPU when ``model.onednn_linear`` allows them.

        Only model types known to keep their linear layers in ``model.encoder``
        qualify. The choice is made from the config, so a fully cached run
        finds its cache folder without loading the weights.
        """
        requested = self.model_cfg.onednn_linear and self.device.type == "cpu" and self.dtype == torch.float32
        packable = getattr(self.config, "model_type", None) in cpu_linear.PACKABLE_MODEL_TYPES
        if requested and packable and cpu_linear.onednn_linear_available():
            return cpu_linear.ONEDNN_KERNEL
        if requested and not packable:
            logger.info(
                "model.onednn_linear: model type %r is not among those that eval/cpu_linear.py packs, so it keeps its own linear layers",
                getattr(self.config, "model_type", None),
            )
        return cpu_linear.TORCH_KERNEL

    def fingerprint(self) -> dict[str, Any]:
        """Describe everything about this encoder that changes the bits of an embedding."""
        import tokenizers
        import transformers

        return {
            "model_id": self.checkpoint.model_id,
            "revision": self.checkpoint.revision,
            "weights_sha256": self.checkpoint.weights_sha256,
            "tokenizer_files_sha256": _tokenizer_files_sha256(Path(self.checkpoint.folder)),
            "dtype": self.effective_dtype,
            "device_type": self.device.type,
            "max_length": self.max_length,
            "pooling": self.model_cfg.pooling,
            "batch_size": self.model_cfg.batch_size,
            "max_batch_tokens": self.max_batch_tokens,
            "attn_implementation": self.attn_implementation,
            "linear_kernel": self.linear_kernel,
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "tokenizers": tokenizers.__version__,
            # Any edit to this module (pooling, batching, normalisation) or to
            # the loading code starts a new cache folder, so a code change cannot
            # be hidden by old embeddings.
            "encoder_source_sha256": _source_sha256(Path(__file__), Path(checkpoint_module.__file__), Path(cpu_linear.__file__)),
        }

    def _model_max_positions(self) -> int:
        positions = getattr(self.config, "max_position_embeddings", None) or self.model_cfg.max_length
        # XLM-R based checkpoints reserve two position ids for padding offsets.
        if getattr(self.config, "model_type", "") in {"xlm-roberta", "roberta"}:
            positions -= 2
        return int(positions)

    def _model_meta(self) -> ModelMeta:
        n_parameters = count_parameters(self.checkpoint)
        return ModelMeta(
            loader=None,
            name=self.checkpoint.model_id,
            revision=self.checkpoint.revision,
            release_date=None,
            languages=None,
            n_parameters=n_parameters,
            memory_usage_mb=None,
            max_tokens=self.max_length,
            embed_dim=self.hidden_size,
            license=None,
            open_weights=True,
            public_training_code=None,
            public_training_data=None,
            framework=["PyTorch"],
            similarity_fn_name=ScoringFunction.COSINE,
            use_instructions=self.prefix_scheme == "e5-instruct",
            training_datasets=None,
        )

    def encode(
        self,
        inputs: "DataLoader[BatchedInput]",
        *,
        task_metadata: "TaskMetadata",
        hf_split: str,
        hf_subset: str,
        prompt_type: Optional["PromptType"] = None,
        **kwargs: Any,
    ) -> np.ndarray:
        """Encode every text of ``inputs`` with the prefix its task and prompt type call for.

        Returns:
            float32 array of shape (number of texts, hidden size).
        """
        texts: list[str] = []
        for batch in inputs:
            texts.extend(batch["text"])

        prompt_type_value = prompt_type.value if prompt_type is not None else None
        prefix = self.prefix_for(task_metadata, prompt_type_value)
        self.stats.prefixes[f"{task_metadata.name}:{prompt_type_value or 'none'}"] = prefix
        self.stats.prompt_type_counts[prompt_type_value or "none"] += len(texts)

        normalize = prefixes.normalize_for_task(
            task_metadata.type,
            normalize=self.model_cfg.normalize,
            normalize_classification=self.model_cfg.normalize_classification,
        )
        show_progress_bar = bool(kwargs.get("show_progress_bar", True))
        description = f"Encoding {task_metadata.name} {prompt_type_value or 'texts'}"
        return self.embed([prefix + text for text in texts], normalize=normalize, show_progress_bar=show_progress_bar, description=description)

    def prefix_for(self, task_metadata: "TaskMetadata", prompt_type: Optional[str]) -> str:
        """Return the prefix for texts of ``task_metadata`` with the given prompt type."""
        instruction = ""
        if self.prefix_scheme == "e5-instruct":
            instruction = prefixes.task_instruction(task_metadata)
        return prefixes.resolve_prefix(
            self.prefix_scheme,
            task_type=task_metadata.type,
            task_name=task_metadata.name,
            prompt_type=prompt_type,
            instruction=instruction,
        )

    def embed(
        self,
        texts: Sequence[str],
        *,
        normalize: bool = True,
        show_progress_bar: bool = False,
        description: str = "Encoding",
    ) -> np.ndarray:
        """Embed already-prefixed texts; identical texts are encoded once.

        Texts are tokenised once, sorted by length so that each batch pads
        little, and put back in input order at the end. The sorted texts are
        encoded in chunks of whole batches. With a cache, each finished chunk
        is stored, and a chunk found there is not encoded again.

        Raises:
            NonFiniteEmbeddingError: the model produced NaN or infinite values.
            EncodingOutOfMemoryError: one text does not fit in accelerator memory.
        """
        unique_texts = list(dict.fromkeys(texts))
        position = {text: i for i, text in enumerate(unique_texts)}
        self.stats.texts += len(texts)
        self.stats.unique_texts += len(unique_texts)

        hidden_size = self.hidden_size
        if not unique_texts:
            return np.zeros((0, hidden_size), dtype=np.float32)

        cached = self._load_planned_chunks(unique_texts, normalize=normalize, description=description)
        if cached is not None:
            return cached[[position[text] for text in texts]]
        # Loading the weights settles the attention implementation, and with
        # it the cache folder, before the plan or any chunk is looked up there.
        self.load_weights()

        encoded = self.tokenizer(
            unique_texts,
            truncation=True,
            max_length=self.max_length,
            padding=False,
            return_overflowing_tokens=False,
            return_length=True,
        )
        lengths = encoded["length"]
        self.stats.tokens += int(sum(lengths))
        at_max_length = sum(1 for n in lengths if n >= self.max_length)
        self.stats.truncated += at_max_length
        if at_max_length:
            logger.info(
                "%s: %d of %d texts reach max_length=%d tokens; longer ones are truncated",
                description,
                at_max_length,
                len(unique_texts),
                self.max_length,
            )

        order = np.argsort(-np.asarray(lengths), kind="stable")
        if self.cache is not None:
            self.cache.store_plan(unique_texts, normalize=normalize, order=order, tokens=int(sum(lengths)), at_max_length=at_max_length)
        unique_embeddings = np.empty((len(unique_texts), hidden_size), dtype=np.float32)
        chunks = range(0, len(order), self.chunk_size)
        progress = tqdm(
            total=len(order), desc=description, disable=not show_progress_bar, unit="text"
        )
        with progress:
            for number, start in enumerate(chunks, start=1):
                indices = order[start : start + self.chunk_size]
                unique_embeddings[indices] = self._embed_chunk(
                    encoded, indices, unique_texts, normalize=normalize, description=description, progress=progress
                )
                if len(chunks) > 1:
                    logger.info("%s: chunk %d/%d done (%d texts)", description, number, len(chunks), len(indices))

        return unique_embeddings[[position[text] for text in texts]]

    def _load_planned_chunks(self, unique_texts: list[str], *, normalize: bool, description: str) -> Optional[np.ndarray]:
        """Return the embeddings of ``unique_texts`` from the cache when every chunk is there, else None.

        The stored plan gives the length order, so a fully cached call skips
        tokenisation; its token counts keep the record's statistics the same.
        """
        if self.cache is None:
            return None
        plan = self.cache.load_plan(unique_texts, normalize=normalize)
        if plan is None:
            return None

        order = plan["order"]
        chunks = [order[start : start + self.chunk_size] for start in range(0, len(order), self.chunk_size)]
        keys = [self.cache.chunk_key([unique_texts[i] for i in chunk], normalize=normalize) for chunk in chunks]
        if not all(self.cache.chunk_path(key).is_file() for key in keys):
            return None

        hidden_size = self.hidden_size
        unique_embeddings = np.empty((len(unique_texts), hidden_size), dtype=np.float32)
        for chunk, key in zip(chunks, keys):
            embeddings = self.cache.load(key, rows=len(chunk), dim=hidden_size)
            if embeddings is None:
                return None
            unique_embeddings[chunk] = embeddings
        self.stats.chunks_reused += len(chunks)
        self.stats.tokens += plan["tokens"]
        self.stats.truncated += plan["at_max_length"]
        logger.info("%s: all %d chunks found in the embedding cache", description, len(chunks))
        return unique_embeddings

    def _embed_chunk(
        self,
        encoded: Any,
        indices: np.ndarray,
        unique_texts: list[str],
        *,
        normalize: bool,
        description: str,
        progress: Any,
    ) -> np.ndarray:
        hidden_size = self.hidden_size
        key = None
        if self.cache is not None:
            key = self.cache.chunk_key([unique_texts[i] for i in indices], normalize=normalize)
            cached = self.cache.load(key, rows=len(indices), dim=hidden_size)
            if cached is not None:
                self.stats.chunks_reused += 1
                progress.update(len(indices))
                return cached

        embeddings = np.empty((len(indices), hidden_size), dtype=np.float32)
        start = 0
        while start < len(indices):
            # Within a chunk the texts are sorted longest first, so the first
            # text of a batch sets its padded length.
            longest = max(1, len(encoded["input_ids"][indices[start]]))
            batch = indices[start : start + max(1, min(self.batch_size, self.max_batch_tokens // longest))]
            out_of_memory = False
            try:
                embeddings[start : start + len(batch)] = self._embed_batch(
                    encoded, batch, unique_texts, normalize=normalize, description=description
                )
            except torch.OutOfMemoryError as error:
                if len(batch) == 1:
                    raise EncodingOutOfMemoryError(
                        f"{description}: the accelerator ran out of memory on a single text of "
                        f"{len(encoded['input_ids'][batch[0]])} tokens ({error}); lower model.max_length "
                        "or free accelerator memory"
                    ) from error
                out_of_memory = True
            # The retry happens outside the except block, so the failed batch's
            # tensors, which the traceback keeps alive, are freed first.
            if out_of_memory:
                self._halve_batch_size(len(batch), description)
                continue
            start += len(batch)
            progress.update(len(batch))

        if self.cache is not None and key is not None:
            self.cache.store(key, embeddings)
        self.stats.chunks_encoded += 1
        return embeddings

    def _halve_batch_size(self, failed_batch: int, description: str) -> None:
        self.batch_size = max(1, failed_batch // 2)
        self.max_batch_tokens = max(1, self.max_batch_tokens // 2)
        self.stats.out_of_memory_retries += 1
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        logger.warning(
            "%s: out of memory on a batch of %d texts; retrying with batch size %d for the rest of the run",
            description,
            failed_batch,
            self.batch_size,
        )

    def _embed_batch(
        self, encoded: Any, batch: np.ndarray, unique_texts: list[str], *, normalize: bool, description: str
    ) -> np.ndarray:
        keys = [key for key in ("input_ids", "attention_mask", "token_type_ids") if key in encoded]
        features = self.tokenizer.pad({key: [encoded[key][i] for i in batch] for key in keys}, return_tensors="pt")
        embeddings = self._forward(features, normalize=normalize)

        finite = np.isfinite(embeddings).all(axis=1)
        if not finite.all():
            bad = [unique_texts[batch[row]] for row in np.flatnonzero(~finite)]
            named = ", ".join(_excerpt(text) for text in bad[:NAMED_TEXTS])
            more = f" and {len(bad) - NAMED_TEXTS} more" if len(bad) > NAMED_TEXTS else ""
            raise NonFiniteEmbeddingError(
                f"{description}: the model produced NaN or infinite embeddings for {len(bad)} of {len(batch)} "
                f"texts in a batch: {named}{more}. With model.dtype=float16 try bfloat16 or float32; otherwise "
                "check the checkpoint's weights for NaN values"
            )
        return embeddings

    @torch.inference_mode()
    def _forward(self, features: dict[str, torch.Tensor], *, normalize: bool) -> np.ndarray:
        features = {key: value.to(self.device) for key, value in features.items()}
        output = self.model(**features)
        pooled = self.pool(output.last_hidden_state, features["attention_mask"]).float()
        if normalize:
            pooled = torch.nn.functional.normalize(pooled, p=2, dim=-1)
        return pooled.cpu().numpy()


def _excerpt(text: str, limit: int = 100) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")


def _source_sha256(*paths: Path) -> str:
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _tokenizer_files_sha256(folder: Path) -> str:
    """Hash the checkpoint's config and tokenizer files (everything but the weights), in name order."""
    digest = hashlib.sha256()
    for path in sorted(folder.iterdir()):
        if path.is_file() and path.suffix in {".json", ".txt", ".model"}:
            digest.update(path.name.encode("utf-8") + b"\0")
            digest.update(path.read_bytes())
    return digest.hexdigest()
