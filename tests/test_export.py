"""Deployment: one torch.export program and one ONNX model serve every batch and image size."""

import numpy as np
import onnxruntime
import pytest
import torch
from conftest import TINY
from torch.export import Dim

from masked_autoencoder import MAEEncoder, MAEViTClassifier

SIZES = [(1, 3, 16, 64), (3, 3, 40, 24)]
BUILDERS = {
    "encoder": lambda: MAEEncoder(TINY),
    "classifier": lambda: MAEViTClassifier(TINY, num_classes=5),
    "token_classifier": lambda: MAEViTClassifier(TINY, num_classes=5, global_pool=False),
}


def _model(kind: str) -> torch.nn.Module:
    torch.manual_seed(0)
    model = BUILDERS[kind]().eval()
    if isinstance(model, MAEViTClassifier):
        torch.nn.init.normal_(model.head.weight)  # logits of a visible size, not the near-zero fresh head's
    return model


def _dynamic_sizes() -> dict[str, dict[int, object]]:
    rows, columns = Dim("rows", min=1, max=64), Dim("columns", min=1, max=64)
    return {"imgs": {0: Dim("batch", min=1, max=64), 2: 8 * rows, 3: 8 * columns}}


@pytest.mark.parametrize("kind", list(BUILDERS))
def test_one_exported_program_serves_every_batch_and_image_size(kind):
    model = _model(kind)
    program = torch.export.export(model, (torch.randn(2, 3, 32, 48),), dynamic_shapes=_dynamic_sizes())
    for shape in SIZES:
        imgs = torch.randn(*shape)
        torch.testing.assert_close(program.module()(imgs), model(imgs), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", ["encoder", "classifier"])
def test_onnx_export_with_dynamic_sizes_matches_eager_in_onnx_runtime(kind, tmp_path):
    model = _model(kind)
    program = torch.onnx.export(model, (torch.randn(2, 3, 32, 48),), dynamic_shapes=_dynamic_sizes(), dynamo=True)
    program.save(tmp_path / "model.onnx")
    session = onnxruntime.InferenceSession(tmp_path / "model.onnx", providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    for shape in SIZES:
        imgs = torch.randn(*shape)
        (got,) = session.run(None, {name: imgs.numpy()})
        with torch.no_grad():
            expected = model(imgs).numpy()
        assert got.shape == expected.shape
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4)
