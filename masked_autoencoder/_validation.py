"""The one home of our error messages and of the small rules every argument check shares."""

from __future__ import annotations

import math
import numbers
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


def is_number(value: object) -> bool:
    """Whether ``value`` is a real number (NumPy scalars included), and not a bool."""
    # numbers.Real: NumPy registers its scalar types there, so np.float32(0.75) is a number as 0.75 is.
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def is_int(value: object) -> bool:
    """Whether ``value`` is an int (or a symbolic size), and not a bool."""
    return isinstance(value, _INTS) and not isinstance(value, bool)


def is_static(*sizes: object) -> bool:
    """Whether sizes are plain ints, not the symbolic sizes of a traced program (comparing those adds guards)."""
    return all(isinstance(size, int) for size in sizes)


def square_side(count: int) -> int | None:
    """The side of a square grid of ``count`` cells, or None when ``count`` is not a square."""
    side = math.isqrt(count)
    return side if side * side == count else None


def grid_or_square(grid: int | tuple[int, int] | None, count: int, name: str, what: str) -> tuple[int, int]:
    """``grid`` as an (h, w) pair, or when it is None the square grid of ``count`` cells.

    ``what`` describes the cells in the error raised when they form no square, e.g. "L = 6 patches (dim 1)".
    """
    if grid is None:
        side = square_side(count)
        require(side is not None, name, None, f"given: {what} do not form a square grid")
        grid = side
    return to_pair(grid, name)  # type: ignore[arg-type]


def to_pair(value: int | tuple[int, int] | list[int], name: str) -> tuple[int, int]:
    """Turn an int or an (h, w) pair of positive ints (or symbolic sizes) into an (h, w) tuple."""
    pair = (value, value) if isinstance(value, _INTS) else tuple(value)
    ok = len(pair) == 2 and all(is_int(v) and v > 0 for v in pair)
    require(ok, name, repr(value), "a positive int or a pair of positive ints (h, w)")
    return pair  # type: ignore[return-value]


def require_positive_int(value: object, name: str) -> None:
    """Raise unless ``value`` is an int greater than zero."""
    require(is_int(value) and value > 0, name, repr(value), "a positive int")  # type: ignore[operator]


def require_positive_number(value: object, name: str) -> None:
    """Raise unless ``value`` is a number greater than zero."""
    require(is_number(value) and value > 0, name, repr(value), "a positive number")  # type: ignore[operator]


def require_mask_ratio(value: object, name: str = "mask_ratio") -> float:
    """Raise unless ``value`` is a number in [0, 1); returns it as a Python float."""
    require(is_number(value) and 0.0 <= value < 1.0, name, repr(value), "a number in [0, 1)")  # type: ignore[operator]
    return float(value)  # type: ignore[arg-type]
