"""empty_init, where from_pretrained builds: meta parameters, no default init, in this thread only."""

import gc
import threading

import pytest
import torch
from torch import nn
from torch.nn import init

from masked_autoencoder.hub.empty_init import empty_init


def test_modules_get_meta_parameters():
    with empty_init():
        linear, norm = nn.Linear(4, 3), nn.LayerNorm(4)
    assert all(p.is_meta for p in [*linear.parameters(), *norm.parameters()])
    assert linear.weight.shape == (3, 4)


def test_default_init_functions_do_nothing_inside_and_work_again_after():
    weights = torch.zeros(3, 4)
    with empty_init():
        for draw in (init.kaiming_uniform_, init.uniform_, init.normal_):
            assert draw(weights) is weights
        init.constant_(weights, 1.0)
    assert weights.eq(0).all()
    init.kaiming_uniform_(weights)
    assert weights.ne(0).any()


def test_other_threads_build_and_initialise_as_usual():
    built: list[nn.Linear] = []
    entered, done = threading.Event(), threading.Event()

    def build_elsewhere() -> None:
        entered.wait()
        built.append(nn.Linear(4, 3))
        done.set()

    thread = threading.Thread(target=build_elsewhere)
    thread.start()
    with empty_init():
        entered.set()
        done.wait(timeout=30)
    thread.join()
    assert not built[0].weight.is_meta and built[0].weight.ne(0).any()


def test_layer_norm_fills_are_skipped_on_meta_only_and_the_default_device_is_meta():
    outside = torch.zeros(3)
    with empty_init():
        norm = nn.LayerNorm(4)
        outside.fill_(1.0)  # a real tensor is filled as usual
        assert torch.get_default_device().type == "meta"
    assert norm.weight.is_meta and outside.eq(1).all()
    assert torch.get_default_device().type == "cpu"


@pytest.mark.parametrize("enabled", [True, False])
def test_garbage_collection_pauses_inside_and_is_restored_to_its_state(enabled):
    was = gc.isenabled()
    try:
        gc.enable() if enabled else gc.disable()
        with empty_init():
            assert not gc.isenabled()
        assert gc.isenabled() == enabled
        with pytest.raises(RuntimeError), empty_init():
            raise RuntimeError("restored on errors too")
        assert gc.isenabled() == enabled
    finally:
        gc.enable() if was else gc.disable()
