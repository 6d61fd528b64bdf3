"""ONNX Runtime for sentence-transformers text towers: export once, run on every core.

The whole sentence-transformers pipeline after tokenisation (transformer, pooling,
normalisation) is exported with ``torch.onnx.export`` from the local weights, offline, and
run by ONNX Runtime's CPU execution provider with all graph optimisations on
(https://onnxruntime.ai/docs/performance/model-optimizations/graph-optimizations.html).
``int8`` is ONNX Runtime's dynamic quantisation, per output channel, of the MatMul weights
(https://onnxruntime.ai/docs/performance/model-optimizations/quantization.html); it is only
used while its vectors keep a mean cosine of at least :data:`INT8_MIN_COSINE` to fp32 on the
first titles it embeds (checked by :class:`OnnxTextRuntime`).

Exported files are cached in a folder (by the embedding jobs: ``<embeddings>/runtime``),
named by the weights digest, the precision and the exporter's versions, and written
atomically, so that a second run, or a run after a kill, loads them without exporting again.
"""

from __future__ import annotations

import logging
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from eclip.errors import ModelError
from eclip.progress import console
from eclip.rundir import umask_mode

#: Runtimes of a sentence-transformers text tower (``auto``: ``onnx`` on a CPU when ONNX
#: Runtime is installed, else ``torch``).
RUNTIMES = ("auto", "torch", "onnx", "onnx-int8")
#: Smallest mean cosine between int8 and fp32 vectors that int8 may keep.
INT8_MIN_COSINE = 0.99
#: Titles of the first batch compared between int8 and fp32.
INT8_CHECK_ROWS = 256
#: Largest batch ONNX Runtime is given: with length-sorted titles, small batches keep the
#: activations in cache (10,000 WDC titles, 2 cores: 137 titles/s at 32, 124 at 64, 91 at 256).
ORT_MAX_BATCH = 32
#: Exported graph format; part of the cache file name.
OPSET = 17


def onnx_available() -> bool:
    """Whether ONNX Runtime and the ``onnx`` exporter package are importable."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def check_runtime(runtime: str) -> str:
    """``runtime`` itself when it is one of :data:`RUNTIMES`.

    Raises:
        ModelError: an unknown runtime.
    """
    if runtime not in RUNTIMES:
        raise ModelError(f"unknown runtime {runtime!r}; choose one of {', '.join(RUNTIMES)}.")
    return runtime


def resolve_runtime(runtime: str, device: str) -> str:
    """The runtime ``runtime`` means on ``device``.

    ``auto`` is ``onnx`` on a CPU (fp32: the same vectors as PyTorch, measured faster; see
    docs/benchmarks/scale.md, "A million listings on a 2-core CPU") when ONNX Runtime is installed, and ``torch`` on a GPU, where PyTorch
    already runs the tower at full speed.

    Raises:
        ModelError: an unknown runtime, or ``onnx*`` on a GPU or without ONNX Runtime.
    """
    check_runtime(runtime)
    on_gpu = not device.startswith("cpu")
    if runtime == "auto":
        return "onnx" if not on_gpu and onnx_available() else "torch"
    if runtime.startswith("onnx"):
        if on_gpu:
            raise ModelError(f"--runtime {runtime} runs on the CPU; on a GPU ({device}) use --runtime torch or auto.")
        if not onnx_available():
            raise ModelError(
                f"--runtime {runtime} needs the packages onnx and onnxruntime; install them (uv sync) or use --runtime torch."
            )
    return runtime


def _tower(model: Any) -> Any:
    """The exported graph's forward as a module: token ids and mask -> sentence embedding."""
    import torch

    class Tower(torch.nn.Module):
        def __init__(self, st: Any) -> None:
            super().__init__()
            self.st = st

        def forward(self, input_ids: Any, attention_mask: Any) -> Any:
            return self.st({"input_ids": input_ids, "attention_mask": attention_mask})["sentence_embedding"]

    return Tower(model).eval()


#: numpy's names of the CPU features that give int8 matrix products their speed: AVX-512 VNNI
#: and AVX-VNNI (x86; AMX also implies VNNI) and the Arm dot-product instructions.
INT8_FEATURES = ("AVX512VNNI", "AVX512_CLX", "AVX_VNNI", "AVXVNNI", "ASIMDDP")
_int8_notice_shown = False


def int8_instructions() -> str | None:
    """The first of :data:`INT8_FEATURES` this CPU has, or ``None``: without one, ONNX
    Runtime's int8 kernels widen to 16 bits and run at about fp32 speed (measured on an
    AVX2-only CPU: 124 titles/s int8 vs 125 fp32; on a CPU with AVX-512 VNNI, about 2x).
    Read from numpy's runtime CPU dispatch table (``numpy._core._multiarray_umath.__cpu_features__``)."""
    try:
        from numpy._core._multiarray_umath import __cpu_features__ as features
    except ImportError:  # numpy < 2 (the project allows 1.26)
        from numpy.core._multiarray_umath import __cpu_features__ as features  # type: ignore[no-redef]
    return next((f for f in INT8_FEATURES if features.get(f)), None)


def int8_notice() -> None:
    """Say once per process that ``onnx-int8`` will not be faster on this CPU, if so."""
    global _int8_notice_shown
    if _int8_notice_shown or int8_instructions() is not None:
        return
    _int8_notice_shown = True
    console.print(
        "[yellow]--runtime onnx-int8: this CPU has no int8 dot-product instructions (AVX-512 VNNI, AVX-VNNI or Arm "
        "dot product), so int8 runs at about fp32 speed here; --runtime onnx gives the exact vectors as fast.[/]"
    )


def cores() -> int:
    """CPU cores this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def export_onnx(model: Any, path: Path) -> Path:
    """Export a loaded ``SentenceTransformer`` (on the CPU) to ``path``, atomically.

    Inputs ``input_ids`` and ``attention_mask`` are ``(batch, tokens)`` int64 with both axes
    dynamic; the output ``embedding`` is ``(batch, d)`` float32 (normalised when the model
    ends in a Normalize module).

    Raises:
        ModelError: the model cannot be traced or exported.
    """
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    tok = model.tokenizer(["a product title", "another title with more words in it"], padding=True, return_tensors="pt")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            # the tracer warns about shape checks that are constant for an encoder (mask
            # length == token count); vectors are tested against PyTorch's at many lengths
            warnings.simplefilter("ignore")
            torch.onnx.export(
                _tower(model),
                (tok["input_ids"], tok["attention_mask"]),
                tmp,
                input_names=["input_ids", "attention_mask"],
                output_names=["embedding"],
                dynamic_axes={
                    "input_ids": {0: "batch", 1: "tokens"},
                    "attention_mask": {0: "batch", 1: "tokens"},
                    "embedding": {0: "batch"},
                },
                opset_version=OPSET,
                dynamo=False,
            )
        umask_mode(tmp)
        os.replace(tmp, path)
    except Exception as exc:  # noqa: BLE001 - any exporter failure becomes one message
        raise ModelError(f"cannot export the text tower to ONNX ({exc}); use --runtime torch.") from exc
    finally:
        Path(tmp).unlink(missing_ok=True)
    return path


def quantize_int8(fp32: Path, path: Path) -> Path:
    """Dynamic int8 quantisation (per-channel weights) of an exported fp32 graph, atomically."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".onnx", dir=path.parent)
    os.close(fd)
    try:
        quiet = logging.getLogger()
        level = quiet.level
        quiet.setLevel(logging.ERROR)  # its advice to pre-process applies to static quantisation
        try:
            quantize_dynamic(str(fp32), tmp, weight_type=QuantType.QInt8, per_channel=True)
        finally:
            quiet.setLevel(level)
        umask_mode(tmp)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return path


def _session(path: Path, threads: int) -> Any:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


class OnnxTextRuntime:
    """A sentence-transformers model's text tower run by ONNX Runtime.

    Args:
        model: the loaded ``SentenceTransformer`` (CPU); its tokenizer and ``max_seq_length``
            are used as they are.
        digest: the weights digest (names the cached files).
        cache_dir: folder of exported graphs.
        precision: ``fp32`` or ``int8``.
        threads: intra-op threads (default: every core this process may use).

    Raises:
        ModelError: the export fails.
    """

    def __init__(
        self, model: Any, digest: str, cache_dir: Path, precision: str = "fp32", threads: int | None = None
    ) -> None:
        import onnxruntime as ort
        import torch

        self.model = model
        self.precision = precision
        self.threads = threads or cores()
        tag = f"{digest}-opset{OPSET}-torch{torch.__version__.split('+')[0]}"
        fp32 = cache_dir / f"{tag}-fp32.onnx"
        if not fp32.exists():
            export_onnx(model, fp32)
        self.files = {"fp32": fp32}
        self._fp32 = _session(fp32, self.threads)
        self._run = self._fp32
        self.checked_cosine: float | None = None
        if precision == "int8":
            int8_notice()
            q = cache_dir / f"{tag}-ort{ort.__version__}-int8.onnx"
            if not q.exists():
                quantize_int8(fp32, q)
            self.files["int8"] = q
            self._run = _session(q, self.threads)

    def _batches(self, texts: list[str], batch_size: int) -> tuple[np.ndarray, list[dict[str, np.ndarray]]]:
        """Texts sorted by token count into batches (little padding): order and encodings."""
        tok = self.model.tokenizer
        max_len = int(self.model.max_seq_length or 512)
        lengths = [
            len(ids) for ids in tok(texts, add_special_tokens=True, truncation=True, max_length=max_len)["input_ids"]
        ]
        order = np.argsort(lengths, kind="stable")
        batches = []
        for s in range(0, len(texts), batch_size):
            enc = tok(
                [texts[i] for i in order[s : s + batch_size]],
                padding=True,
                truncation=True,
                max_length=max_len,
                return_tensors="np",
            )
            batches.append(
                {
                    "input_ids": enc["input_ids"].astype(np.int64),
                    "attention_mask": enc["attention_mask"].astype(np.int64),
                }
            )
        return order, batches

    def encode(self, texts: list[str], batch_size: int) -> np.ndarray:
        """``(len(texts), d)`` float32, L2-normalised rows, in the order of ``texts``.

        Raises:
            ModelError: int8, on its first call, keeps a mean cosine below
                :data:`INT8_MIN_COSINE` to fp32 on these titles.
        """
        batch_size = min(batch_size, ORT_MAX_BATCH)
        order, batches = self._batches(texts, batch_size)
        if self.precision == "int8" and self.checked_cosine is None:
            self._check_int8(texts[:INT8_CHECK_ROWS], batch_size)
        parts = [self._run.run(None, b)[0] for b in batches]
        out = np.empty((len(texts), parts[0].shape[1]), dtype=np.float32)
        out[order] = np.concatenate(parts)
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.where(norms > 0, norms, 1)

    def _check_int8(self, texts: list[str], batch_size: int) -> None:
        _, batches = self._batches(texts, batch_size)
        ref = np.concatenate([self._fp32.run(None, b)[0] for b in batches])
        got = np.concatenate([self._run.run(None, b)[0] for b in batches])
        cos = np.einsum("ij,ij->i", ref, got) / (np.linalg.norm(ref, axis=1) * np.linalg.norm(got, axis=1) + 1e-12)
        self.checked_cosine = float(cos.mean())
        if self.checked_cosine < INT8_MIN_COSINE:
            raise ModelError(
                f"--runtime onnx-int8 keeps a mean cosine of {self.checked_cosine:.4f} to fp32 on the first {len(texts)} titles, "
                f"below {INT8_MIN_COSINE}; its matches would drift. Use --runtime onnx (fp32, the same vectors as PyTorch)."
            )
