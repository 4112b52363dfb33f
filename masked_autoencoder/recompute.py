"""Keep less for backward: tensors that autograd would save are recomputed there from a cheaper one."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, NamedTuple

import torch


@contextmanager
def recomputed_in_backward(tensor: torch.Tensor, recompute: Callable[[], torch.Tensor]) -> Iterator[None]:
    """Inside, autograd saves no tensor that shares ``tensor``'s storage: backward calls ``recompute()`` instead.

    ``recompute`` must give ``tensor``'s values again (a pure function of tensors that autograd keeps
    anyway, such as an activation of a saved input). What autograd saved of ``tensor`` (the tensor
    itself, or a view of it) is rebuilt from the recomputed values with the same shape, strides and
    offset. Built on ``torch.autograd.graph.saved_tensors_hooks``: inside, an outer pair of such hooks
    (``save_on_cpu``, a checkpoint's) does not see the tensors saved, and what ``recompute`` refers to stays
    alive, where it is, until backward. A non-contiguous ``tensor`` is left alone (saved as usual).
    """
    if not tensor.is_contiguous():  # the recomputation is contiguous: views of another layout would not match
        yield
        return
    storage = tensor.untyped_storage().data_ptr()

    def pack(saved: torch.Tensor) -> Any:
        if saved.untyped_storage().data_ptr() != storage:
            return saved
        return _View(tuple(saved.shape), saved.stride(), saved.storage_offset())

    def unpack(packed: Any) -> torch.Tensor:
        if not isinstance(packed, _View):
            return packed
        return recompute().contiguous().as_strided(packed.shape, packed.stride, packed.offset)

    with torch.autograd.graph.saved_tensors_hooks(pack, unpack):
        yield


class _View(NamedTuple):
    """How a saved tensor viewed the recomputed one's storage: enough to rebuild it."""

    shape: tuple[int, ...]
    stride: tuple[int, ...]
    offset: int
