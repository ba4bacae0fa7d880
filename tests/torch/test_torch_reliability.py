"""softshare.torch at the edges users reach: the overlapped step's exit paths, autograd's corners, layouts.

Each test guards one class of issue 24 and fails on the code before it (the
crashes in a subprocess, so that the old code's segfault or abort fails the
test instead of ending the run).
"""

from __future__ import annotations

import math
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="softshare.torch needs PyTorch")

import softshare
import softshare.torch as sst
from softshare.compress import HyperPrior

LAM = 1e-3
MIX = ([0.0, -0.2, 0.2], [-5.0, -4.0, -4.0], [1.0, 0.0, 0.0])


def _run_all(codes: dict[str, str]) -> dict[str, tuple[int, str, str]]:
    """Each ``code`` in a fresh interpreter, all at once: (status, stdout, stderr) by name."""
    procs = {
        name: subprocess.Popen(
            [sys.executable, "-c", "import torch, softshare.torch as sst\n" + code],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name, code in codes.items()
    }
    results = {}
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=120)
        results[name] = (proc.returncode, out, err)
    return results


# a pass long enough to still run while the caller replaces the storage or exits
# (1.6e7 bytes: the allocator maps it, and a freed map faults when read)
_LONG = """
w = torch.nn.Parameter(torch.randn(4_000_000) * 0.1)
m = 24
mu, lv, lg = torch.linspace(-0.5, 0.5, m), torch.full((m,), -6.0), torch.zeros(m)
pending = sst.start_penalty(w, mu, lv, lg, 1e-3, n_threads=1)
"""

_JOIN = """
import gc
gc.collect()
junk = [torch.ones(4_000_000) for _ in range(4)]  # reuse what was freed
try:
    print("value", pending.join().isfinite().item())
except RuntimeError as err:
    print("refused:", err)
"""


def test_a_storage_replaced_or_resized_during_the_pass_is_never_read() -> None:
    changes = {
        "data": "w.data = torch.zeros(10)",
        "set_": "with torch.no_grad():\n    w.set_(torch.zeros(7))",
        "resize": textwrap.dedent(
            """
            try:
                w.data.resize_(8_000_000)  # would move the storage
            except RuntimeError as err:
                print("resize refused:", err)
            """
        ),
    }
    results = _run_all({name: _LONG + change + _JOIN for name, change in changes.items()})
    for name, (status, out, err) in results.items():
        assert status == 0, (name, err[-2000:])
        if name == "resize":  # refused at once; nothing changed, so the join hands over
            assert "resize refused: Trying to resize storage that is not resizable" in out
            assert "value True" in out
        else:
            assert "refused: a weight or mixture parameter was given a new storage" in out, name
            assert "join() first" in out


def test_every_exit_path_ends_cleanly() -> None:
    cases = {  # name: (code after start, exit status, words on stderr)
        "exception": ("raise KeyError('between start and join')", 1, "KeyError: 'between start"),
        "never-joined": ("print('left unjoined')", 0, ""),
        "with-block": ("with pending:\n    raise KeyError('inside with')", 1, "'inside with'"),
        # Python's own SIGINT handler set first: a child inherits SIGINT ignored
        # from a run started as a background job (`.ci/run &`), and then
        # os.kill(SIGINT) does nothing (status 0)
        "ctrl-c": (
            "import os, signal\n"
            + "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
            + "os.kill(os.getpid(), signal.SIGINT)",
            -2,
            "KeyboardInterr",
        ),
    }
    results = _run_all({name: _LONG + code for name, (code, _, _) in cases.items()})
    for name, (status, _out, err) in results.items():
        _, want_status, words = cases[name]
        assert "terminate called" not in err, name
        assert status == want_status, (name, err[-2000:])
        assert words in err, name


def _grads(tensors: list[torch.Tensor]) -> list[torch.Tensor | None]:
    return [None if t.grad is None else t.grad.clone() for t in tensors]


def _setup(**kwargs: object) -> tuple[torch.nn.Module, sst.MixturePrior]:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.Tanh(), torch.nn.Linear(5, 2))
    return model, sst.MixturePrior(*MIX, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("mode", ["no_grad", "inference_mode", "enable_grad"])
@pytest.mark.parametrize(
    "kwargs",
    [{}, {"zero_component": True, "pi_zero": 0.7, "hyperprior": HyperPrior()}],
    ids=["plain", "pi_zero-hyperprior"],
)
def test_join_hands_over_the_same_gradients_under_any_grad_mode(
    mode: str, kwargs: dict[str, object]
) -> None:
    model, prior = _setup(**kwargs)
    everything = [*model.parameters(), *prior.parameters()]
    for shared in (False, True):  # True: a weight given twice takes the autograd form
        weights = [*model.parameters(), model[0].weight] if shared else list(model.parameters())
        for t in everything:
            t.grad = None
        prior(weights, LAM).backward()
        expected = _grads(everything)
        for t in everything:
            t.grad = None
        pending = prior.start(weights, LAM, n_threads=1)
        with getattr(torch, mode)():
            value = pending.join()
        assert value.isfinite()
        for g, e in zip(_grads(everything), expected):
            assert g is not None
            assert e is not None
            assert not g.is_inference()
            torch.testing.assert_close(g, e, rtol=0, atol=1e-7)


@pytest.mark.parametrize("mode", ["no_grad", "inference_mode"])
def test_add_grad_adds_the_same_gradients_under_any_grad_mode(mode: str) -> None:
    model, prior = _setup(zero_component=True, pi_zero=0.7, hyperprior=HyperPrior())
    everything = [*model.parameters(), *prior.parameters()]
    prior.add_grad_(model, LAM)
    expected = _grads(everything)
    for t in everything:
        t.grad = None
    with getattr(torch, mode)():
        prior.add_grad_(model, LAM)
    for g, e in zip(_grads(everything), expected):
        assert g is not None
        assert e is not None
        assert not g.is_inference()
        assert torch.equal(g, e)
    model[0].weight.grad.add_(1.0)  # the next step's accumulation works


def test_start_under_inference_mode_leaves_ordinary_gradients() -> None:
    model, prior = _setup()
    with torch.inference_mode():
        pending = prior.start(model, LAM, n_threads=1)
    pending.join()
    for p in model.parameters():
        assert p.grad is not None
        assert not p.grad.is_inference()
        p.grad.add_(1.0)  # the next step's accumulation works


def test_recipe_steps_before_join_are_refused() -> None:
    model, prior = _setup()
    pending = prior.start(model, LAM, n_threads=1)
    state = None
    for step, call in [
        ("merge_", lambda: prior.merge_(model)),
        ("quantize_", lambda: prior.quantize_(model)),
    ]:
        with pytest.raises(RuntimeError, match=rf"^{step} while a penalty started with prior"):
            call()
    pending.join()
    state = prior.quantize_(model)  # joined: allowed again
    pending = prior.start(model, LAM, n_threads=1)
    with pytest.raises(
        RuntimeError, match=r"requantize_ while .* join\(\) it \(or cancel\(\) it\)"
    ):
        prior.requantize_(model, state)
    pending.cancel()
    prior.requantize_(model, state)
    # a penalty dropped unjoined (an exception between start and join) holds nothing up
    pending = prior.start(model, LAM, n_threads=1)
    del pending
    prior.merge_(model)


def test_a_mixture_replaced_under_a_functional_pending_penalty_is_refused_at_join() -> None:
    model, prior = _setup()
    pending = sst.start_penalty(model.parameters(), prior.mu, prior.log_var, prior.logit, LAM)
    prior.merge_(threshold=0.0)  # not the prior's own start(): only join can tell
    with pytest.raises(RuntimeError, match=r"new storage or shape .* merge_"):
        pending.join()


def test_cancel_drops_the_result_and_a_cancelled_penalty_cannot_be_joined() -> None:
    model, prior = _setup()
    with prior.start(model, LAM, n_threads=1) as pending:
        pass  # left unjoined: cancelled
    assert pending.finished
    assert all(p.grad is None for p in model.parameters())
    with pytest.raises(RuntimeError, match="this penalty was cancelled: start a new one"):
        pending.join()
    pending.cancel()  # a no-op once finished
    with prior.start(model, LAM, n_threads=1) as pending:
        pending.join()
    assert all(p.grad is not None for p in model.parameters())
    with pytest.raises(RuntimeError, match="joined already"):
        pending.join()


def _reference(w: torch.Tensor, prior: sst.MixturePrior) -> np.ndarray:
    mix = prior.mixture()  # the prior's float32 values
    return np.asarray(softshare.penalty(w.detach().numpy().copy(), mix, LAM).grad_w).reshape(-1)


@pytest.mark.parametrize("route", ["penalty", "prior", "overlapped"])
def test_backward_never_hands_out_a_tensor_it_keeps(route: str) -> None:
    p = torch.nn.Parameter(torch.linspace(-0.4, 0.4, 12).reshape(3, 4))
    view = p.view(-1)  # a parameter reached through a view: its .grad may alias what is returned
    prior = sst.MixturePrior(*MIX)
    prior.requires_grad_(False)
    value = None
    expected = _reference(p, prior)
    if route == "penalty":
        value = sst.penalty(view, *prior.effective(), LAM)
    elif route == "prior":
        value = prior(view, LAM)
    if value is not None:
        value.backward(retain_graph=True)
        np.testing.assert_array_equal(p.grad.numpy().reshape(-1), expected)
        p.grad.zero_()  # zero_grad(set_to_none=False)
        torch.nn.utils.clip_grad_norm_([p], 0.0)  # scales .grad in place
        value.backward(retain_graph=True)
        np.testing.assert_array_equal(p.grad.numpy().reshape(-1), expected)
        first = torch.autograd.grad(value, p, retain_graph=True)[0]
        first.mul_(-1.0)  # the caller's tensor: changing it changes nothing else
        second = torch.autograd.grad(value, p, retain_graph=True)[0]
        assert second.data_ptr() != first.data_ptr()
        np.testing.assert_array_equal(second.numpy().reshape(-1), expected)
    else:  # the tensor given twice: join's own autograd pass
        prior.start([view, p], LAM, n_threads=1).join()
        np.testing.assert_allclose(p.grad.numpy().reshape(-1), 2 * expected, rtol=1e-6)


@pytest.mark.parametrize(
    "kwargs", [{}, {"zero_component": True, "pi_zero": 0.6, "hyperprior": HyperPrior()}]
)
def test_a_graph_kept_from_before_merge_is_refused(kwargs: dict[str, object]) -> None:
    model, prior = _setup(**kwargs)
    value = prior(model, LAM)
    value.backward(retain_graph=True)
    prior.merge_(threshold=1e9)  # shorter mu, log_var, logit: the graph's gradients no longer fit
    for p in model.parameters():
        p.grad = None
    with pytest.raises(RuntimeError, match=r"^this penalty's graph was made before merge_ changed"):
        value.backward()
    assert all(p.grad is None for p in prior.parameters())  # was: .grad of the old length
    prior(model, LAM).backward()  # a graph made after merge_ is fine
    assert all(p.grad.shape == p.shape for p in prior.parameters() if p.grad is not None)


@pytest.mark.filterwarnings("ignore:The PyTorch API of nested tensors:UserWarning")
@pytest.mark.filterwarnings("ignore:Sparse CSR tensor support is in beta:UserWarning")
def test_sparse_mkldnn_and_nested_tensors_get_our_own_type_error() -> None:
    prior = sst.MixturePrior(*MIX)
    dense = torch.randn(4, 4)
    tensors = {
        "sparse_coo": dense.to_sparse(),
        "sparse_csr": dense.to_sparse_csr(),
        "mkldnn": dense.to_mkldnn(),
        "nested": torch.nested.nested_tensor([torch.randn(3), torch.randn(2)]),
    }
    for kind, t in tensors.items():
        calls = [
            ("weights[0]", lambda t=t: sst.penalty(t, *prior.effective())),
            ("weights[0]", lambda t=t: prior(t)),
            ("weights[0]", lambda t=t: prior.add_grad_(t)),
            ("weights[0]", lambda t=t: prior.start(t)),
            ("parameter '0'", lambda t=t: prior.snapshot([t])),
        ]
        for name, call in calls:
            with pytest.raises(TypeError, match=rf"^{re.escape(name)} is a {kind} tensor: "):
                call()
    with pytest.raises(TypeError, match=r"^mu is a sparse_coo tensor: softshare takes dense"):
        sst.penalty(dense, torch.zeros(2).to_sparse(), torch.zeros(2), torch.zeros(2))
    assert math.isfinite(prior(dense).item())
