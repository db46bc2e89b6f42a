"""Divided space-time attention: the token-by-token definition, and the regrouping's memory traffic."""
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from egovlpv2.model.divided import DividedAttention


def reference_divided_attention(attn: DividedAttention, x, frames, axis, num_cls):
    """Frozen-in-Time attention written token by token: a patch reads CLS 0 and its group, CLS c reads
    itself and every patch."""
    b, s, c = x.shape
    h, d = attn.heads, c // attn.heads
    q, k, v = attn.qkv(x).view(b, s, 3, h, d).permute(2, 0, 3, 1, 4)
    per_frame = (s - num_cls) // frames
    patches = list(range(num_cls, s))
    rows = []
    for i in range(s):
        if i < num_cls:
            keys = [i] + patches
        else:
            f, p = divmod(i - num_cls, per_frame)
            group = ([num_cls + g * per_frame + p for g in range(frames)] if axis == "time"
                     else [num_cls + f * per_frame + g for g in range(per_frame)])
            keys = [0] + group
        w = (q[:, :, i : i + 1] @ k[:, :, keys].transpose(-1, -2) * d**-0.5).softmax(-1)
        rows.append((w @ v[:, :, keys])[:, :, 0])
    return attn.proj(torch.stack(rows, 2).transpose(1, 2).reshape(b, s, c))


@pytest.mark.parametrize("num_cls", [1, 2])
@pytest.mark.parametrize("axis", ["time", "space"])
@pytest.mark.parametrize("frames", [1, 3])
def test_divided_attention_matches_token_by_token_reference(axis, num_cls, frames):
    torch.manual_seed(0)
    attn = DividedAttention(32, 4, axis).double()
    per_frame = 5
    x = torch.randn(2, num_cls + frames * per_frame, 32, dtype=torch.float64, requires_grad=True)
    out = attn(x, frames, num_cls)
    expected = reference_divided_attention(attn, x, frames, axis, num_cls)
    torch.testing.assert_close(out, expected, atol=1e-12, rtol=1e-10)
    upstream = torch.randn_like(out)
    inputs = [x, *attn.parameters()]
    grads = torch.autograd.grad(out, inputs, upstream)
    expected_grads = torch.autograd.grad(expected, inputs, upstream)
    for got, want in zip(grads, expected_grads):
        torch.testing.assert_close(got, want, atol=1e-12, rtol=1e-10)


class OpsWritingTokenTensors(TorchDispatchMode):
    """Names of the ops whose output is at least ``size`` elements."""

    def __init__(self, size: int):
        super().__init__()
        self.size, self.names = size, []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if torch.is_tensor(out) and out.numel() >= self.size:
            self.names.append(func._overloadpacket.__name__)
        return out


@pytest.mark.parametrize("num_cls", [1, 2])
@pytest.mark.parametrize("axis", ["time", "space"])
def test_backward_writes_no_zero_filled_token_gradients(axis, num_cls):
    """Slicing or unbinding a token tensor makes autograd write a zero-filled gradient of the whole tensor
    (slice_backward, select_backward, stack); the regrouping functions write their gradients in place."""
    attn = DividedAttention(32, 4, axis)
    x = torch.randn(2, num_cls + 3 * 5, 32, requires_grad=True)
    out = attn(x, 3, num_cls)
    with OpsWritingTokenTensors(x.numel()) as ops:
        out.backward(torch.ones_like(out))
    assert not {"slice_backward", "select_backward", "stack", "cat", "zeros", "new_zeros"} & set(ops.names), ops.names
