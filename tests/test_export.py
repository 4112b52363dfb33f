"""Deployment: one torch.export program and one ONNX model serve every batch and image size."""

import numpy as np
import onnxruntime
import pytest
import torch
from conftest import TINY
from torch.export import Dim

from masked_autoencoder import MAEEncoder, MAEViTClassifier, MaskedAutoencoderViT
from masked_autoencoder.model import MAEOutput

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


def _dynamic_sizes(noise: bool = False) -> dict[str, dict[int, object]]:
    rows, columns, batch = Dim("rows", min=1, max=64), Dim("columns", min=1, max=64), Dim("batch", min=1, max=64)
    sizes: dict[str, dict[int, object]] = {"imgs": {0: batch, 2: 8 * rows, 3: 8 * columns}}
    # L = rows * columns is no expression export takes: a size of its own, checked against the images when run.
    return sizes | ({"noise": {0: batch, 1: Dim("patches", min=4, max=4096)}} if noise else {})


def _mae() -> MaskedAutoencoderViT:
    torch.manual_seed(0)
    return MaskedAutoencoderViT(TINY).eval()


def _assert_same_output(got: MAEOutput, expected: MAEOutput) -> None:
    assert isinstance(got, MAEOutput)
    for field in ("loss", "pred", "mask", "ids_restore", "latent"):
        torch.testing.assert_close(getattr(got, field), getattr(expected, field), rtol=1e-5, atol=1e-5)


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


def test_the_full_mae_exports_with_dynamic_sizes_drawing_its_masks_as_eager_does():
    model = _mae()
    program = torch.export.export(model, (torch.randn(2, 3, 32, 48),), dynamic_shapes=_dynamic_sizes())
    for shape in SIZES:
        imgs = torch.randn(*shape)
        torch.manual_seed(5)  # the exported program draws its noise from the global generator, as eager does
        got = program.module()(imgs)
        torch.manual_seed(5)
        _assert_same_output(got, model(imgs))


def test_the_full_mae_exports_with_the_noise_as_an_input():
    model = _mae()
    example, noise = (torch.randn(2, 3, 32, 48),), {"noise": torch.rand(2, 24)}
    # Deferred asserts: the guard that checks the noise's size against the images' cannot be written for a **kwargs.
    program = torch.export.export(
        model,
        example,
        noise,
        dynamic_shapes=_dynamic_sizes(noise=True),
        prefer_deferred_runtime_asserts_over_guards=True,
    )
    for batch, channels, height, width in SIZES:
        imgs, noise = torch.randn(batch, channels, height, width), torch.rand(batch, height * width // 64)
        _assert_same_output(program.module()(imgs, noise=noise), model(imgs, noise=noise))
    with pytest.raises(RuntimeError, match="Runtime assertion failed"):  # noise for another number of patches
        program.module()(imgs, noise=torch.rand(batch, height * width // 64 + 1))


def test_the_full_mae_in_onnx_runtime_matches_eager_given_the_same_noise(tmp_path):
    model = _mae()
    example, noise = (torch.randn(2, 3, 32, 48),), {"noise": torch.rand(2, 24)}
    program = torch.onnx.export(model, example, kwargs=noise, dynamic_shapes=_dynamic_sizes(noise=True), dynamo=True)
    program.save(tmp_path / "mae.onnx")
    session = onnxruntime.InferenceSession(tmp_path / "mae.onnx", providers=["CPUExecutionProvider"])
    assert [value.name for value in session.get_inputs()] == ["imgs", "noise"]
    for batch, channels, height, width in SIZES:
        imgs, noise = torch.randn(batch, channels, height, width), torch.rand(batch, height * width // 64)
        outputs = session.run(None, {"imgs": imgs.numpy(), "noise": noise.numpy()})
        with torch.no_grad():
            expected = model(imgs, noise=noise)
        for got, field in zip(outputs, ("loss", "pred", "mask", "ids_restore", "latent"), strict=True):
            np.testing.assert_allclose(got, getattr(expected, field).numpy(), rtol=0, atol=1e-4)
