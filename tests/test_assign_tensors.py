"""assign_tensors: what load_state_dict(assign=True) does, without its per-module Python."""

import torch
from torch import nn

from masked_autoencoder.hub.empty_init import empty_init
from masked_autoencoder.hub.loading import assign_tensors


def _net() -> nn.Module:
    net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    net[0].bias.requires_grad_(False)
    return net


def _state() -> dict[str, torch.Tensor]:
    return {key: torch.randn(value.shape).to(value.dtype) for key, value in _net().state_dict().items()}


def test_parameters_and_buffers_become_the_given_tensors_and_keep_requires_grad():
    state = _state()
    with empty_init():
        net = _net()
    assign_tensors(net, state)
    assert isinstance(net[0].weight, nn.Parameter) and net[0].weight.requires_grad
    assert isinstance(net[0].bias, nn.Parameter) and not net[0].bias.requires_grad
    assert not isinstance(net[1].running_mean, nn.Parameter) and "running_mean" in net[1]._buffers
    for key, tensor in net.state_dict().items():
        assert tensor.data_ptr() == state[key].data_ptr(), key  # no copy
    reference = _net()
    reference.load_state_dict(state, assign=True)
    assert {k: v.requires_grad for k, v in reference.named_parameters()} == {
        k: v.requires_grad for k, v in net.named_parameters()
    }


def test_a_module_that_customises_loading_is_loaded_by_load_state_dict():
    seen = []
    with empty_init():
        net = _net()
    net[1].register_load_state_dict_pre_hook(lambda module, state, prefix, *args: seen.append(prefix))
    state = _state()
    assign_tensors(net, state)
    assert seen == ["1."] and torch.equal(net[1].running_var, state["1.running_var"])
