"""Build the real-model fixtures in tests/data/real_models/ (issue 13): real architectures, random weights.

Each fixture is made here, with fixed seeds and no download: a torchvision or Hugging Face architecture is
built with random weights (torch.manual_seed), exported with torch.onnx.export (TorchScript exporter,
opset 17), quantized by onnxruntime.quantization, and run by onnxruntime (CPUExecutionProvider,
ORT_DISABLE_ALL, one intra-op thread). Per fixture NAME the folder holds

    NAME.onnx   the quantized model (weights inside the file: no external data)
    NAME.npz    the inputs ("input:<name>") and onnxruntime's outputs ("output:<name>")
    NAME.json   the manifest: how it was made (versions, export, quantization call and arguments, seed, shapes)

tests/test_real_models.py runs each fixture in refquant's spec profile and classifies every difference from
the recorded onnxruntime outputs (refquant.backends.divergence.classify, backend "ort-cpu").

torch and transformers are needed only here, never by the test suite: they live in a separate venv,

    python3.11 -m venv /work/fixtures-venv
    /work/fixtures-venv/bin/pip install "torch==2.13.0+cpu" "torchvision==0.28.0" "transformers>=5,<6" \
        onnx "onnxruntime==1.32.*" onnxscript numpy            # the `fixtures` extra of pyproject.toml
    /work/fixtures-venv/bin/python tools/make_real_models.py            # every fixture (about 30 s)
    /work/fixtures-venv/bin/python tools/make_real_models.py bert_tiny_dynamic lstm_dynamic   # some
    .venv/bin/python -m pytest tests/test_real_models.py               # the main venv: no torch

The fixtures (FIXTURES below): resnet18 (QDQ); mobilenet_v2 (QDQ, QOperator, dynamic), both through
quant_pre_process, calibrated on 4 random 64x64 images; BERT (2 layers, hidden 64) dynamic, dynamic after
onnxruntime.transformers.optimizer (model_type bert), and QDQ after quant_pre_process; an LSTM and a GRU with a
Linear head, dynamic (the LSTM becomes com.microsoft DynamicQuantizeLSTM; the GRU stays float, only its head is
quantized); a GPT-2 (2 layers, hidden 64, logits only) with 4-bit MatMulNBits weights (block 32, symmetric).

Reproducibility: with the same versions of torch, torchvision, transformers, onnx, onnxscript, onnxruntime
and numpy (each manifest records them) the script writes the same files, byte for byte: the seeds are fixed,
the exporter and the quantizers are deterministic on one thread, and the .npz archives are written with a
fixed timestamp. Another version of any of them may export or quantize differently; regenerate then and
commit the new files together with their manifests.

torchvision on this package index ships only its CUDA build, whose compiled extension (torchvision::nms and
the other detection ops) cannot load next to the CPU-only torch wheel. The model definitions are pure
Python, so the script skips torchvision's registration of those ops (_meta_registrations) before importing it
(first thing, as transformers imports torchvision too).

Sizes: the folder must stay under 25 MB. Images are 64x64, sequences 16 tokens, the transformers tiny
(2 layers, hidden 64, 2 heads, vocabulary 100). resnet18 keeps its real widths (11.2 M parameters, about
11 MB once int8), so it is made in one form only (QDQ per-channel U8S8); mobilenet_v2 in all three.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tempfile
import types
import zipfile
from pathlib import Path

import numpy as np
import onnx

OUT = Path(__file__).resolve().parent.parent / "tests" / "data" / "real_models"
SEED = 20261203
OPSET = 17
LIMIT_BYTES = 25 * 1024 * 1024


# --------------------------------------------------------------------------------------------------------------
# helpers


def _versions() -> dict:
    import onnxruntime
    import onnxscript
    import torch
    import transformers

    torchvision = _torchvision()
    versions = {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "onnx": onnx.__version__,
        "onnxscript": onnxscript.__version__,
        "onnxruntime": onnxruntime.__version__,
        "numpy": np.__version__,
        "torchvision": torchvision.__version__,
        "transformers": transformers.__version__,
    }
    return versions


def _host() -> dict:
    """What onnxruntime's kernels depend on here: the MLAS integer kernel family and whether AVX-512F is present
    (its float kernels differ); tests/test_real_models.py compares only on a host with the same."""
    from refquant import host

    return {"mlas_integer_kernels": host.mlas_integer_kernels(), "avx512f": "avx512f" in host.cpu_flags()}


def _torchvision():
    """torchvision without its compiled detection ops (see the module docstring)."""
    if "torchvision" not in sys.modules:
        sys.modules.setdefault("torchvision._meta_registrations", types.ModuleType("torchvision._meta_registrations"))
    import torchvision

    return torchvision


def _export(module, args: tuple, path: Path, input_names, output_names, dynamic_axes=None) -> dict:
    import torch

    module.eval()
    with torch.no_grad():
        torch.onnx.export(
            module, args, str(path), input_names=input_names, output_names=output_names, dynamic_axes=dynamic_axes,
            opset_version=OPSET, dynamo=False, do_constant_folding=True, external_data=False,
        )
    return {"call": "torch.onnx.export", "opset_version": OPSET, "dynamo": False, "do_constant_folding": True,
            "dynamic_axes": dynamic_axes}


def _ort_run(path: Path, feeds: dict) -> dict:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(None, feeds)))


def _write_npz(path: Path, arrays: dict) -> None:
    """np.savez with a fixed timestamp, so that the same arrays give the same bytes."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name in sorted(arrays):
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, np.ascontiguousarray(arrays[name]), allow_pickle=False)
            info = zipfile.ZipInfo(name + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, buffer.getvalue())


def _save(name: str, quantized: Path, feeds: dict, manifest: dict) -> None:
    model = onnx.load(str(quantized))
    onnx.save(model, str(OUT / f"{name}.onnx"))
    outputs = _ort_run(OUT / f"{name}.onnx", feeds)
    arrays = {f"input:{k}": v for k, v in feeds.items()}
    arrays.update({f"output:{k}": v for k, v in outputs.items()})
    _write_npz(OUT / f"{name}.npz", arrays)
    ops = sorted({f"{n.domain or 'ai.onnx'}::{n.op_type}" for n in model.graph.node})
    manifest = {
        "name": name,
        "seed": SEED,
        "versions": _versions(),
        "host": _host(),
        **manifest,
        "inputs_drawn_by": "numpy default_rng(seed + 2)",
        "inputs": {k: {"dtype": str(v.dtype), "shape": list(v.shape)} for k, v in feeds.items()},
        "outputs": {k: {"dtype": str(v.dtype), "shape": list(v.shape)} for k, v in outputs.items()},
        "ops": ops,
        "onnxruntime_run": {"providers": ["CPUExecutionProvider"], "graph_optimization_level": "ORT_DISABLE_ALL",
                            "intra_op_num_threads": 1},
    }
    (OUT / f"{name}.json").write_text(json.dumps(manifest, indent=2, sort_keys=False) + "\n")
    size = sum((OUT / f"{name}{ext}").stat().st_size for ext in (".onnx", ".npz", ".json"))
    print(f"{name}: {size / 1e6:.2f} MB, ops {', '.join(ops)}")


class _Reader:
    """onnxruntime.quantization.CalibrationDataReader over a list of feeds."""

    def __init__(self, batches):
        self._batches = iter(batches)

    def get_next(self):
        return next(self._batches, None)


def _quantize_static(src: Path, dst: Path, calibration: list, form: str) -> dict:
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    quantize_static(
        str(src), str(dst), _Reader(calibration), quant_format=getattr(QuantFormat, form),
        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True,
    )
    return {
        "call": "onnxruntime.quantization.quantize_static",
        "arguments": {"quant_format": form, "activation_type": "QUInt8", "weight_type": "QInt8", "per_channel": True,
                      "calibrate_method": "MinMax (default)"},
        "calibration": f"{len(calibration)} batches of {list(next(iter(calibration[0].values())).shape)}, standard "
                       "normal, numpy default_rng(seed + 1)",
    }


def _quantize_dynamic(src: Path, dst: Path, weight_type: str, extra_options: dict | None = None) -> dict:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(src), str(dst), weight_type=getattr(QuantType, weight_type), extra_options=extra_options)
    arguments = {"weight_type": weight_type}
    if extra_options:
        arguments["extra_options"] = {k: (onnx.TensorProto.DataType.Name(v) if k == "DefaultTensorType" else v)
                                      for k, v in extra_options.items()}
    return {"call": "onnxruntime.quantization.quantize_dynamic", "arguments": arguments}


def _pre_process(src: Path, dst: Path) -> dict:
    from onnxruntime.quantization import quant_pre_process

    quant_pre_process(str(src), str(dst))
    return {"call": "onnxruntime.quantization.quant_pre_process", "arguments": {}}


# --------------------------------------------------------------------------------------------------------------
# the CNNs


def _images(count: int, batch: int, seed: int) -> list:
    rng = np.random.default_rng(seed)
    return [{"input": rng.standard_normal((batch, 3, 64, 64)).astype(np.float32)} for _ in range(count)]


def _cnn(arch: str, work: Path) -> tuple[Path, dict]:
    import torch

    torchvision = _torchvision()
    torch.manual_seed(SEED)
    module = getattr(torchvision.models, arch)(weights=None, num_classes=10)
    exported = work / f"{arch}.onnx"
    export = _export(module, (torch.zeros(1, 3, 64, 64),), exported, ["input"], ["logits"],
                     dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    pre = work / f"{arch}.pre.onnx"
    steps = [
        {"step": "build", "call": f"torchvision.models.{arch}(weights=None, num_classes=10)",
         "init": "torch.manual_seed(seed)", "mode": "eval"},
        {"step": "export", **export, "example_input": [1, 3, 64, 64]},
        {"step": "pre_process", **_pre_process(exported, pre)},
    ]
    return pre, {"architecture": f"torchvision {arch}", "steps": steps}


def make_cnn(arch: str, form: str, work: Path) -> None:
    pre, manifest = _cnn(arch, work)
    quantized = work / f"{arch}.{form}.onnx"
    if form == "dynamic":
        # ConvInteger on onnxruntime's CPU provider takes uint8 weights only
        step = _quantize_dynamic(pre, quantized, "QUInt8")
    else:
        step = _quantize_static(pre, quantized, _images(4, 1, SEED + 1), form)
    manifest["steps"].append({"step": "quantize", **step})
    suffix = {"QDQ": "qdq_u8s8_per_channel", "QOperator": "qoperator_u8s8_per_channel", "dynamic": "dynamic_u8u8"}
    _save(f"{arch}_{suffix[form]}", quantized, _images(1, 2, SEED + 2)[0], manifest)


# --------------------------------------------------------------------------------------------------------------
# BERT


BERT_CONFIG = dict(vocab_size=100, hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128,
                   max_position_embeddings=64, type_vocab_size=2)


def _bert_feeds(seed: int) -> dict:
    rng = np.random.default_rng(seed)
    mask = np.ones((2, 16), np.int64)
    mask[1, 11:] = 0  # the second sequence is padded
    return {
        "input_ids": rng.integers(0, 100, (2, 16)).astype(np.int64),
        "attention_mask": mask,
        "token_type_ids": np.concatenate([np.zeros((2, 8), np.int64), np.ones((2, 8), np.int64)], axis=1),
    }


def _bert(work: Path) -> tuple[Path, dict]:
    import torch
    import transformers

    torch.manual_seed(SEED)
    config = transformers.BertConfig(**BERT_CONFIG, attn_implementation="eager")
    bert = transformers.BertModel(config)

    class Outputs(torch.nn.Module):
        """BertModel called by keyword (its positional order changed in transformers 5), outputs as a tuple."""

        def __init__(self):
            super().__init__()
            self.bert = bert

        def forward(self, input_ids, attention_mask, token_type_ids):
            out = self.bert(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
                            use_cache=False)
            return out.last_hidden_state, out.pooler_output

    module = Outputs()
    exported = work / "bert.onnx"
    feeds = _bert_feeds(SEED + 1)
    args = tuple(torch.from_numpy(feeds[k]) for k in ("input_ids", "attention_mask", "token_type_ids"))
    export = _export(module, args, exported, ["input_ids", "attention_mask", "token_type_ids"],
                     ["last_hidden_state", "pooler_output"])
    steps = [
        {"step": "build", "call": "transformers.BertModel(transformers.BertConfig(**config, attn_implementation='eager'))",
         "config": BERT_CONFIG, "init": "torch.manual_seed(seed)", "mode": "eval"},
        {"step": "export", **export, "example_input": "the fixture's inputs"},
    ]
    return exported, {"architecture": "Hugging Face transformers BertModel (tiny config)", "steps": steps}


def make_bert_static(work: Path) -> None:
    """The exported BERT through quant_pre_process, then quantize_static (QDQ, per-channel U8S8)."""
    exported, manifest = _bert(work)
    pre = work / "bert.pre.onnx"
    manifest["steps"].append({"step": "pre_process", **_pre_process(exported, pre)})
    quantized = work / "bert.qdq.onnx"
    calibration = [_bert_feeds(SEED + 1 + 100 * i) for i in range(1, 5)]
    step = _quantize_static(pre, quantized, calibration, "QDQ")
    step["calibration"] = "4 batches: the fixture's input layout, input_ids from numpy default_rng(seed + 1 + 100 * i)"
    manifest["steps"].append({"step": "quantize", **step})
    _save("bert_tiny_qdq_u8s8_per_channel", quantized, _bert_feeds(SEED + 2), manifest)


def make_bert(work: Path, optimized: bool) -> None:
    exported, manifest = _bert(work)
    source = exported
    if optimized:
        from onnxruntime.transformers import optimizer

        source = work / "bert.opt.onnx"
        optimizer.optimize_model(str(exported), model_type="bert", num_heads=2, hidden_size=64).save_model_to_file(
            str(source))
        manifest["steps"].append({
            "step": "optimize", "call": "onnxruntime.transformers.optimizer.optimize_model",
            "arguments": {"model_type": "bert", "num_heads": 2, "hidden_size": 64}})
    quantized = work / "bert.q.onnx"
    # shape inference cannot type the outputs of the fused com.microsoft nodes: float, as the quantizer suggests
    extra = {"DefaultTensorType": onnx.TensorProto.FLOAT} if optimized else None
    manifest["steps"].append({"step": "quantize", **_quantize_dynamic(source, quantized, "QInt8", extra)})
    name = "bert_tiny_optimized_dynamic" if optimized else "bert_tiny_dynamic"
    _save(name, quantized, _bert_feeds(SEED + 2), manifest)


# --------------------------------------------------------------------------------------------------------------
# LSTM, GRU


def make_recurrent(kind: str, work: Path) -> None:
    import torch

    class Tagger(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = getattr(torch.nn, kind)(input_size=16, hidden_size=32, num_layers=1)
            self.head = torch.nn.Linear(32, 8)

        def forward(self, x):
            y, _ = self.rnn(x)
            return self.head(y)

    torch.manual_seed(SEED)
    module = Tagger()
    exported = work / f"{kind}.onnx"
    export = _export(module, (torch.zeros(16, 2, 16),), exported, ["input"], ["output"])
    quantized = work / f"{kind}.q.onnx"
    manifest = {
        "architecture": f"torch.nn.{kind}(input_size=16, hidden_size=32, num_layers=1) -> torch.nn.Linear(32, 8)",
        "steps": [
            {"step": "build", "init": "torch.manual_seed(seed)", "mode": "eval"},
            {"step": "export", **export, "example_input": [16, 2, 16]},
            {"step": "quantize", **_quantize_dynamic(exported, quantized, "QInt8")},
        ],
    }
    rng = np.random.default_rng(SEED + 2)
    _save(f"{kind.lower()}_dynamic", quantized, {"input": rng.standard_normal((16, 2, 16)).astype(np.float32)}, manifest)


# --------------------------------------------------------------------------------------------------------------
# a tiny decoder language model, weights 4-bit (MatMulNBits)


GPT2_CONFIG = dict(vocab_size=100, n_positions=64, n_embd=64, n_layer=2, n_head=2, n_inner=128)


def make_decoder_nbits(work: Path) -> None:
    import torch
    import transformers
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    class Logits(torch.nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, input_ids):
            # an explicit all-ones mask: without one, transformers 5 looks for packed sequences (aten::diff, which
            # the TorchScript exporter cannot export)
            mask = torch.ones_like(input_ids)
            return self.model(input_ids=input_ids, attention_mask=mask, use_cache=False).logits

    torch.manual_seed(SEED)
    config = transformers.GPT2Config(**GPT2_CONFIG, attn_implementation="eager", use_cache=False)
    module = Logits(transformers.GPT2LMHeadModel(config))
    exported = work / "gpt2.onnx"
    export = _export(module, (torch.zeros(2, 16, dtype=torch.int64),), exported, ["input_ids"], ["logits"])
    quantizer = MatMulNBitsQuantizer(onnx.load(str(exported)), bits=4, block_size=32, is_symmetric=True)
    quantizer.process()
    quantized = work / "gpt2.q.onnx"
    quantizer.model.save_model_to_file(str(quantized))
    manifest = {
        "architecture": "Hugging Face transformers GPT2LMHeadModel (tiny config), logits only, no KV cache",
        "steps": [
            {"step": "build", "call": "transformers.GPT2LMHeadModel(transformers.GPT2Config(**config, "
             "attn_implementation='eager', use_cache=False))", "config": GPT2_CONFIG,
             "init": "torch.manual_seed(seed)", "mode": "eval"},
            {"step": "export", **export, "example_input": [2, 16]},
            {"step": "quantize", "call": "onnxruntime.quantization.matmul_nbits_quantizer.MatMulNBitsQuantizer(model, "
             "bits=4, block_size=32, is_symmetric=True).process()",
             "arguments": {"bits": 4, "block_size": 32, "is_symmetric": True}},
        ],
    }
    rng = np.random.default_rng(SEED + 2)
    _save("gpt2_tiny_matmulnbits4", quantized, {"input_ids": rng.integers(0, 100, (2, 16)).astype(np.int64)}, manifest)


# --------------------------------------------------------------------------------------------------------------


FIXTURES = {
    "resnet18_qdq_u8s8_per_channel": lambda work: make_cnn("resnet18", "QDQ", work),
    "mobilenet_v2_qdq_u8s8_per_channel": lambda work: make_cnn("mobilenet_v2", "QDQ", work),
    "mobilenet_v2_qoperator_u8s8_per_channel": lambda work: make_cnn("mobilenet_v2", "QOperator", work),
    "mobilenet_v2_dynamic_u8u8": lambda work: make_cnn("mobilenet_v2", "dynamic", work),
    "bert_tiny_dynamic": lambda work: make_bert(work, optimized=False),
    "bert_tiny_optimized_dynamic": lambda work: make_bert(work, optimized=True),
    "bert_tiny_qdq_u8s8_per_channel": make_bert_static,
    "lstm_dynamic": lambda work: make_recurrent("LSTM", work),
    "gru_dynamic": lambda work: make_recurrent("GRU", work),
    "gpt2_tiny_matmulnbits4": make_decoder_nbits,
}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help=f"fixtures to make (default: all): {', '.join(FIXTURES)}")
    names = parser.parse_args(argv).names or list(FIXTURES)
    unknown = [name for name in names if name not in FIXTURES]
    if unknown:
        parser.error(f"unknown fixtures: {', '.join(unknown)}")
    import torch

    _torchvision()  # before transformers, which imports torchvision when it is installed
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    OUT.mkdir(parents=True, exist_ok=True)
    for name in names:
        with tempfile.TemporaryDirectory() as work:
            FIXTURES[name](Path(work))
    total = sum(p.stat().st_size for p in OUT.iterdir())
    print(f"{OUT}: {total / 1e6:.2f} MB")
    if total > LIMIT_BYTES:
        print(f"over the {LIMIT_BYTES / 2**20:.0f} MiB limit", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
