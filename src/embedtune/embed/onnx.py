"""Export a fine-tuned model to ONNX (optionally int8 dynamic quantization) for fast CPU inference.

sentence-transformers' own ONNX backend needs ``optimum``, whose releases pin ``transformers < 4.58``, older
than the transformers 5 this project runs on; so the export is done directly: the transformer goes through
``torch.onnx.export``, weights are quantized with ``onnxruntime.quantization.quantize_dynamic``, and
:class:`OnnxEncoder` re-applies the model's pooling and normalisation around an onnxruntime session.

The export remembers the fingerprint of the model it came from, so the index guard can accept its query
vectors for the index built with that model (``benchmarks/onnx_int8.py`` measures their quality and speed against
PyTorch's).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from embedtune.embed.encoder import ROLES, prompt_for
from embedtune.errors import ConfigError

META = "embedtune_onnx.json"


def export_onnx(model_dir: Path, out_dir: Path, *, quantize: bool = True, opset: int = 17) -> dict:
    """Write ``model.onnx`` (and ``model_int8.onnx``), the tokenizer and the pooling config to ``out_dir``."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    from embedtune.models import model_fingerprint

    model_dir, out_dir = Path(model_dir), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model = AutoModel.from_pretrained(str(model_dir), local_files_only=True).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
    sample = tokenizer(["an example sentence", "another one, a little longer"], padding=True, return_tensors="pt")
    names = [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in sample]

    class Wrapper(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, *inputs):
            return self.inner(**dict(zip(names, inputs))).last_hidden_state

    axes = {n: {0: "batch", 1: "sequence"} for n in names}
    axes["last_hidden_state"] = {0: "batch", 1: "sequence"}
    with torch.no_grad():
        torch.onnx.export(Wrapper(model), tuple(sample[n] for n in names), str(out_dir / "model.onnx"),
                          input_names=names, output_names=["last_hidden_state"], dynamic_axes=axes,
                          opset_version=opset, dynamo=False)
    if quantize:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        # Per-channel int8 weights on the MatMuls only: mean cosine to fp32 vectors 0.994 on SciFact abstracts,
        # against 0.93 for the per-tensor default that also quantizes the embedding lookups.
        quantize_dynamic(str(out_dir / "model.onnx"), str(out_dir / "model_int8.onnx"), weight_type=QuantType.QInt8,
                         per_channel=True, op_types_to_quantize=["MatMul"])
    tokenizer.save_pretrained(str(out_dir))
    pooling = next(iter(sorted(model_dir.glob("*Pooling/config.json"))), None)
    pooling_config = json.loads(pooling.read_text()) if pooling else {"pooling_mode_mean_tokens": True}
    modules = json.loads((model_dir / "modules.json").read_text()) if (model_dir / "modules.json").is_file() else []
    st_config = model_dir / "sentence_bert_config.json"
    max_len = json.loads(st_config.read_text()).get("max_seq_length", 256) if st_config.is_file() else 256
    prompts_config = model_dir / "config_sentence_transformers.json"
    prompts = (json.loads(prompts_config.read_text()).get("prompts") or {}) if prompts_config.is_file() else {}
    meta = {
        "source_model": str(model_dir.resolve()),
        "source_fingerprint": model_fingerprint(model_dir),
        "pooling": "cls" if pooling_config.get("pooling_mode_cls_token") else "mean",
        "normalize": any(m.get("type", "").endswith("Normalize") for m in modules),
        "max_seq_length": max_len,
        "prompts": {role: prompts[name] if (name := prompt_for(prompts, role)) else "" for role in ROLES},
        "inputs": names,
        "files": sorted(p.name for p in out_dir.glob("*.onnx")),
    }
    (out_dir / META).write_text(json.dumps(meta, indent=2) + "\n")
    return meta


class OnnxEncoder:
    """Sentence embeddings from an exported model with onnxruntime (same pooling/normalisation as the source)."""

    def __init__(self, export_dir: Path, *, quantized: bool = True, threads: int | None = None) -> None:
        import onnxruntime as ort
        from transformers import AutoTokenizer

        export_dir = Path(export_dir)
        if not (export_dir / META).is_file():
            raise ConfigError(f"{export_dir} is not an ONNX export (no {META}); run `embedtune export-onnx`")
        self.meta = json.loads((export_dir / META).read_text())
        name = "model_int8.onnx" if quantized and "model_int8.onnx" in self.meta["files"] else "model.onnx"
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(export_dir / name), options, providers=["CPUExecutionProvider"])
        self.tokenizer = AutoTokenizer.from_pretrained(str(export_dir), local_files_only=True)
        self.fingerprint = self.meta["source_fingerprint"]

    def encode(self, texts: Sequence[str], batch_size: int = 64, role: str = "query") -> np.ndarray:
        """Unit vectors for ``texts`` in ``role`` (the source model's prompt for it prepended, as in
        :func:`embedtune.embed.encoder.encode`)."""
        prompt = self.meta.get("prompts", {}).get(role, "")
        texts = [prompt + text for text in texts] if prompt else list(texts)
        order = np.argsort([-len(t) for t in texts])  # length-sorted batches: little padding
        out = np.zeros((len(texts), 0), dtype=np.float32)
        chunks = []
        for start in range(0, len(texts), batch_size):
            batch = [texts[i] for i in order[start : start + batch_size]]
            tokens = self.tokenizer(batch, padding=True, truncation=True, max_length=self.meta["max_seq_length"],
                                    return_tensors="np")
            feeds = {n: tokens[n].astype(np.int64) for n in self.meta["inputs"]}
            hidden = self.session.run(None, feeds)[0]
            if self.meta["pooling"] == "cls":
                pooled = hidden[:, 0]
            else:
                mask = feeds["attention_mask"][..., None].astype(np.float32)
                pooled = (hidden * mask).sum(1) / np.clip(mask.sum(1), 1e-9, None)
            chunks.append(pooled.astype(np.float32))
        out = np.empty((len(texts), chunks[0].shape[1]), dtype=np.float32) if chunks else out
        if chunks:
            out[order] = np.concatenate(chunks)
        if self.meta["normalize"]:
            out /= np.clip(np.linalg.norm(out, axis=1, keepdims=True), 1e-12, None)
        return out
