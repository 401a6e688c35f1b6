"""The E5 encoder: a transformers model behind MTEB's encoder protocol.

Each text gets the prefix that :mod:`eval.prefixes` assigns, is truncated to
``max_length`` tokens, and goes through the model; the last hidden states are
pooled over the attention mask and, where the task wants it, L2-normalised.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Optional, Sequence

import numpy as np
import torch
from mteb.models.abs_encoder import AbsEncoder
from mteb.models.model_meta import ModelMeta, ScoringFunction
from tqdm.auto import tqdm

from eval import prefixes
from eval.config import ConfigError
from eval.checkpoint import CheckpointInfo, load_model_and_tokenizer, resolve_checkpoint

if TYPE_CHECKING:
    from mteb.abstasks.task_metadata import TaskMetadata
    from mteb.types import BatchedInput, PromptType
    from torch.utils.data import DataLoader

    from eval.config import ModelConfig

logger = logging.getLogger(__name__)

TORCH_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


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
    """Return the torch dtype for the weights; half precision needs an accelerator.

    Raises:
        ConfigError: float16 or bfloat16 requested on the CPU.
    """
    dtype = TORCH_DTYPES[requested]
    if dtype != torch.float32 and device.type == "cpu":
        raise ConfigError(
            f"model.dtype={requested} is only supported on a GPU; on the CPU use model.dtype=float32"
        )
    return dtype


@dataclass
class EncodeStats:
    """Counts and prefixes gathered while encoding, reported in the results record."""

    texts: int = 0
    unique_texts: int = 0
    truncated: int = 0
    tokens: int = 0
    prefixes: dict[str, str] = field(default_factory=dict)
    prompt_type_counts: dict[str, int] = field(default_factory=lambda: defaultdict(int))


class E5Encoder(AbsEncoder):
    """E5-style sentence encoder implementing MTEB's ``EncoderProtocol``.

    Args:
        model_cfg: checkpoint location, pooling, normalisation, max_length and batching.
        prefix_scheme: ``e5``, ``e5-instruct``, ``mteb`` or ``none`` (see :mod:`eval.prefixes`).
    """

    def __init__(self, model_cfg: "ModelConfig", prefix_scheme: Optional[str] = None) -> None:
        self.model_cfg = model_cfg
        self.prefix_scheme = prefix_scheme or model_cfg.prefix_scheme
        self.device = select_device(model_cfg.device)
        self.dtype = select_dtype(model_cfg.dtype, self.device)
        self.checkpoint: CheckpointInfo = resolve_checkpoint(model_cfg)
        self.model, self.tokenizer = load_model_and_tokenizer(
            self.checkpoint,
            dtype=self.dtype,
            device=self.device,
            trust_remote_code=model_cfg.trust_remote_code,
        )
        self.max_length = min(model_cfg.max_length, self._model_max_positions())
        self.pool = POOLING[model_cfg.pooling]
        self.stats = EncodeStats()
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
    def effective_dtype(self) -> str:
        """The dtype of the loaded weights, read back from the model."""
        return str(next(self.model.parameters()).dtype).removeprefix("torch.")

    def _model_max_positions(self) -> int:
        positions = getattr(self.model.config, "max_position_embeddings", None) or self.model_cfg.max_length
        # XLM-R based checkpoints reserve two position ids for padding offsets.
        if getattr(self.model.config, "model_type", "") in {"xlm-roberta", "roberta"}:
            positions -= 2
        return int(positions)

    def _model_meta(self) -> ModelMeta:
        n_parameters = sum(p.numel() for p in self.model.parameters())
        return ModelMeta(
            loader=None,
            name=self.checkpoint.model_id,
            revision=self.checkpoint.revision,
            release_date=None,
            languages=None,
            n_parameters=n_parameters,
            memory_usage_mb=None,
            max_tokens=self.max_length,
            embed_dim=int(self.model.config.hidden_size),
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
        little, and put back in input order at the end.
        """
        unique_texts = list(dict.fromkeys(texts))
        position = {text: i for i, text in enumerate(unique_texts)}
        self.stats.texts += len(texts)
        self.stats.unique_texts += len(unique_texts)

        hidden_size = int(self.model.config.hidden_size)
        if not unique_texts:
            return np.zeros((0, hidden_size), dtype=np.float32)

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
        self.stats.truncated += sum(1 for n in lengths if n >= self.max_length)

        order = np.argsort(-np.asarray(lengths), kind="stable")
        unique_embeddings = np.empty((len(unique_texts), hidden_size), dtype=np.float32)
        batch_size = self.model_cfg.batch_size
        batches = range(0, len(order), batch_size)
        for start in tqdm(batches, desc=description, disable=not show_progress_bar, unit="batch"):
            indices = order[start : start + batch_size]
            features = self.tokenizer.pad(
                {key: [encoded[key][i] for i in indices] for key in ("input_ids", "attention_mask", "token_type_ids") if key in encoded},
                return_tensors="pt",
            )
            unique_embeddings[indices] = self._forward(features, normalize=normalize)

        return unique_embeddings[[position[text] for text in texts]]

    @torch.inference_mode()
    def _forward(self, features: dict[str, torch.Tensor], *, normalize: bool) -> np.ndarray:
        features = {key: value.to(self.device) for key, value in features.items()}
        output = self.model(**features)
        pooled = self.pool(output.last_hidden_state, features["attention_mask"]).float()
        if normalize:
            pooled = torch.nn.functional.normalize(pooled, p=2, dim=-1)

        embeddings = pooled.cpu().numpy()
        if not np.isfinite(embeddings).all():
            raise FloatingPointError(
                "the model produced NaN or infinite embeddings; with model.dtype=float16 try bfloat16 or float32"
            )
        return embeddings
