"""The one home of our error messages: every bad argument raises ``ValueError`` in one format."""

from __future__ import annotations

from typing import NoReturn

import torch


def fail(name: str, got: object, expected: str) -> NoReturn:
    """Raise ``ValueError("<name> must be <expected>, got <got>")``."""
    raise ValueError(f"{name} must be {expected}, got {got}")


def require(ok: bool, name: str, got: object, expected: str) -> None:
    """Raise the standard ``ValueError`` unless ``ok``."""
    if not ok:
        fail(name, got, expected)


def describe(value: object) -> str:
    """A short description for error messages: a tensor's shape, dtype and device, else the type."""
    if isinstance(value, torch.Tensor):
        return f"a tensor of shape {tuple(value.shape)}, dtype {value.dtype} on {value.device}"
    return f"a {type(value).__name__}"


# Symbolic sizes (torch.export, dynamic torch.compile) are ints too: grids of a traced image size are SymInts.
_INTS = (int, torch.SymInt)


def is_static(*sizes: object) -> bool:
    """Whether sizes are plain ints, not the symbolic sizes of a traced program (comparing those adds guards)."""
    return all(isinstance(size, int) for size in sizes)


def to_pair(value: int | tuple[int, int] | list[int], name: str) -> tuple[int, int]:
    """Turn an int or an (h, w) pair of positive ints (or symbolic sizes) into an (h, w) tuple."""
    pair = (value, value) if isinstance(value, _INTS) else tuple(value)
    ok = len(pair) == 2 and all(isinstance(v, _INTS) and not isinstance(v, bool) and v > 0 for v in pair)
    require(ok, name, repr(value), "a positive int or a pair of positive ints (h, w)")
    return pair  # type: ignore[return-value]


def require_positive_int(value: object, name: str) -> None:
    """Raise unless ``value`` is an int greater than zero."""
    ok = isinstance(value, int) and not isinstance(value, bool) and value > 0
    require(ok, name, repr(value), "a positive int")


def require_mask_ratio(value: object, name: str = "mask_ratio") -> None:
    """Raise unless ``value`` is a number in [0, 1)."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and 0.0 <= value < 1.0
    require(ok, name, repr(value), "a number in [0, 1)")
