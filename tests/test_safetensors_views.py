"""map_safetensors: the same tensors as safetensors' load_file, as views of one private mapping."""

import gc
import io
import json
import struct
from pathlib import Path

import pytest
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from masked_autoencoder.hub.safetensors_views import map_safetensors


def _assert_same_as_load_file(path: Path) -> dict[str, torch.Tensor]:
    ours, theirs = map_safetensors(path), load_file(path)
    assert ours.keys() == theirs.keys()
    for key in theirs:
        assert ours[key].dtype == theirs[key].dtype and ours[key].shape == theirs[key].shape, key
        assert torch.equal(ours[key], theirs[key]), key
    return ours


def _write_by_hand(path: Path, tensors: dict[str, tuple[str, list[int], bytes]]) -> None:
    """A safetensors file laid out exactly as given (save_file would reorder and align the tensors)."""
    header, offset = {}, 0
    for key, (dtype, shape, raw) in tensors.items():
        header[key] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(raw)]}
        offset += len(raw)
    encoded = json.dumps(header).encode()
    encoded += b" " * (-len(encoded) % 8)
    path.write_bytes(struct.pack("<Q", len(encoded)) + encoded + b"".join(raw for _, _, raw in tensors.values()))


def test_every_dtype_shape_and_the_metadata_read_as_load_file_reads_them(tmp_path):
    tensors = {
        "f32": torch.randn(3, 5),
        "f64": torch.randn(4, dtype=torch.float64),
        "f16": torch.randn(2, 3).half(),
        "bf16": torch.randn(7).bfloat16(),
        "i64": torch.arange(6).reshape(2, 3),
        "i32": torch.arange(3, dtype=torch.int32),
        "i16": torch.arange(5, dtype=torch.int16),
        "i8": torch.arange(-3, 4, dtype=torch.int8),
        "u8": torch.arange(9, dtype=torch.uint8),
        "bool": torch.tensor([True, False, True]),
        "scalar": torch.tensor(2.5),
        "empty": torch.zeros(0, 4),
    }
    save_file(tensors, tmp_path / "all.safetensors", metadata={"format": "pt"})
    ours = _assert_same_as_load_file(tmp_path / "all.safetensors")
    assert ours["scalar"].shape == () and ours["empty"].shape == (0, 4)


def test_a_tensor_at_an_offset_its_dtype_cannot_view_is_read_by_load_file(tmp_path):
    path = tmp_path / "odd.safetensors"
    # Three bytes of U8 put the F32 tensor at an offset that is not a multiple of 4.
    _write_by_hand(path, {"bytes": ("U8", [3], bytes([1, 2, 3])), "floats": ("F32", [2], struct.pack("<2f", 1.5, -2))})
    ours = _assert_same_as_load_file(path)
    assert ours["floats"].tolist() == [1.5, -2.0]


def test_a_dtype_without_a_direct_view_is_read_by_load_file(tmp_path):
    save_file({"fp8": torch.randn(4).to(torch.float8_e4m3fn), "f32": torch.ones(2)}, tmp_path / "fp8.safetensors")
    ours, theirs = map_safetensors(tmp_path / "fp8.safetensors"), load_file(tmp_path / "fp8.safetensors")
    assert ours["fp8"].dtype == torch.float8_e4m3fn and torch.equal(ours["fp8"].float(), theirs["fp8"].float())


def test_each_tensor_owns_only_its_bytes_of_a_private_mapping_that_writes_never_reach(tmp_path):
    path = tmp_path / "w.safetensors"
    save_file({"a": torch.zeros(4), "big": torch.ones(1000)}, path)
    tensors = map_safetensors(path)
    assert tensors["a"].untyped_storage().nbytes() == 16  # torch.save of one tensor writes 16 bytes, not the file
    buffer = io.BytesIO()
    torch.save(tensors["a"], buffer)
    assert buffer.tell() < 2000
    tensors["a"] += 7
    assert load_file(path)["a"].eq(0).all() and tensors["a"].eq(7).all()


def test_tensors_outlive_every_other_reference_to_the_mapping(tmp_path):
    path = tmp_path / "alive.safetensors"
    save_file({"a": torch.arange(6.0)}, path)
    kept = map_safetensors(path)["a"]
    gc.collect()
    assert kept.tolist() == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]


@pytest.mark.parametrize("damage", ["truncate", "header"])
def test_a_damaged_file_raises_safetensors_own_error(tmp_path, damage):
    path = tmp_path / "bad.safetensors"
    save_file({"a": torch.randn(64)}, path)
    raw = path.read_bytes()
    path.write_bytes(raw[:-10] if damage == "truncate" else raw[:8] + b"{not json" + raw[17:])
    with pytest.raises(SafetensorError):
        map_safetensors(path)
