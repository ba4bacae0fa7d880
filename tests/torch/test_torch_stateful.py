"""A MixturePrior and a small module driven through random sequences of calls, checked at every step.

A hypothesis ``RuleBasedStateMachine``: forward and backward (with and
without ``retain_graph``, a retained graph's backward again), ``add_grad_``, ``start`` /
``join`` / ``cancel`` under any grad mode, ``merge_``, ``quantize_``,
``requantize_``, ``snapshot``, ``save_compressed`` / ``load_compressed``,
optimizer steps and in-place edits (values and storages), in any order.
The machine keeps what every ``.grad`` must hold, computed with the NumPy
reference (``softshare.reference``) when each term was made, and after every
step checks the penalty's value against the reference; a call that the
order makes wrong must raise its clear exception and change nothing.
"""

from __future__ import annotations

import copy
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

torch = pytest.importorskip("torch", reason="softshare.torch needs PyTorch")

import softshare.torch as sst
from softshare import reference

LAM = 1e-2
SEQUENCES = 500  # issue 24: at least 500 sequences in CI
STEPS = 8
RTOL, ATOL = 1e-4, 2e-6
_X = torch.linspace(-1.0, 1.0, 15).reshape(5, 3)
_FILES = Path(tempfile.mkdtemp(prefix="softshare-stateful-"))


def _module() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4), torch.nn.Tanh(), torch.nn.Linear(4, 2)
    )


class PriorMachine(RuleBasedStateMachine):
    """One module, its prior and an optimizer; ``expected`` what each ``.grad`` must hold."""

    runs = 0

    def __init__(self) -> None:
        super().__init__()
        type(self).runs += 1
        self.model = _module()
        self.prior = sst.MixturePrior(
            [0.0, -0.3, 0.3, 0.05], [-6.0, -4.0, -4.0, -5.0], [1.0, 0.0, 0.0, 0.0],
            zero_component=True, penalize="weights",
        )  # fmt: skip
        self.params = [*self.model.parameters(), *self.prior.parameters()]
        self.opt = torch.optim.SGD(self.params, lr=0.01)
        self.expected: dict[int, np.ndarray | None] = {id(p): None for p in self.params}
        self.pending: Any = None
        self.pending_grads: dict[int, np.ndarray] = {}
        self.pending_value = 0.0
        self.dirty: set[str] = set()  # how the tensors a pending pass reads were changed
        self.graph: tuple[torch.Tensor, dict[int, np.ndarray], int] | None = None
        self.state: Any = None
        self.generation = 0  # merges so far
        self.state_generation = 0

    # ---- the model's view -------------------------------------------------

    def weights(self) -> list[torch.Tensor]:
        return self.prior.penalized_parameters(self.model)

    def watched(self) -> set[int]:
        """The tensors a pending pass reads (a change to them must fail its join)."""
        return {id(t) for t in (*self.weights(), *self.prior.parameters())}

    def reference(self) -> tuple[float, dict[int, np.ndarray]]:
        """The penalty's value and every gradient it adds, by the NumPy reference."""
        ws = self.weights()
        ref = reference.penalty([w.detach().numpy().copy() for w in ws], self.prior.mixture(), LAM)
        grads = {id(w): np.asarray(g) for w, g in zip(ws, ref.grad_w)}
        g_mu = np.array(ref.grad_mu, np.float32)
        g_mu[0] = 0.0  # the zero component's mean is pinned
        grads[id(self.prior.mu)] = g_mu
        grads[id(self.prior.log_var)] = np.array(ref.grad_log_var, np.float32)
        grads[id(self.prior.logit)] = np.array(ref.grad_logit, np.float32)
        return ref.value, grads

    def add_expected(self, grads: dict[int, np.ndarray]) -> None:
        for key, g in grads.items():
            have = self.expected[key]
            self.expected[key] = g.astype(np.float32) if have is None else have + g

    def check_grads(self) -> None:
        for p in self.params:
            want = self.expected[id(p)]
            if want is None:
                assert p.grad is None
            else:
                assert p.grad is not None
                np.testing.assert_allclose(p.grad.numpy(), want, rtol=RTOL, atol=ATOL)

    def touched(self, t: torch.Tensor, how: str) -> None:
        if self.pending is not None and id(t) in self.watched():
            self.dirty.add(how)

    # ---- rules ------------------------------------------------------------

    @rule(set_to_none=st.booleans())
    def zero_grad(self, set_to_none: bool) -> None:
        self.opt.zero_grad(set_to_none=set_to_none)
        for key, have in self.expected.items():
            self.expected[key] = None if set_to_none or have is None else np.zeros_like(have)
        self.check_grads()

    @rule(retain=st.booleans(), with_loss=st.booleans())
    def backward(self, retain: bool, with_loss: bool) -> None:
        _, grads = self.reference()
        value = self.prior(self.model, LAM)
        total = value
        if with_loss:
            loss = self.model(_X).square().mean()
            model_params = list(self.model.parameters())
            loss_grads = torch.autograd.grad(loss, model_params, retain_graph=True)
            self.add_expected({id(p): g.numpy().copy() for p, g in zip(model_params, loss_grads)})
            total = loss + value
        total.backward(retain_graph=retain)
        self.add_expected(grads)
        self.graph = (value, grads, self.generation) if retain else None
        self.check_grads()

    @rule(mode=st.sampled_from(["enable_grad", "no_grad", "inference_mode"]))
    def add_grad(self, mode: str) -> None:
        value, grads = self.reference()
        with getattr(torch, mode)():
            got = self.prior.add_grad_(self.model, LAM)
        assert got == pytest.approx(value, rel=RTOL, abs=ATOL)
        self.add_expected(grads)
        self.check_grads()

    @precondition(lambda self: self.graph is not None)
    @rule()
    def backward_again(self) -> None:
        """A retained graph: zero_grad(set_to_none=False), clipping, autograd.grad twice."""
        assert self.graph is not None
        value, grads, generation = self.graph
        self.zero_grad(set_to_none=False)
        if generation != self.generation:  # made before merge_: refused, nothing added
            with pytest.raises(RuntimeError, match="graph was made before merge_ changed"):
                value.backward(retain_graph=True)
            self.check_grads()
            return
        torch.nn.utils.clip_grad_norm_(self.params, 1.0)  # scales every .grad in place
        value.backward(retain_graph=True)
        self.add_expected(grads)
        self.check_grads()
        w = self.weights()[0]
        first = torch.autograd.grad(value, w, retain_graph=True)[0]
        first.mul_(-2.0)  # the caller's own tensor
        second = torch.autograd.grad(value, w, retain_graph=True)[0]
        np.testing.assert_allclose(second.numpy(), grads[id(w)], rtol=RTOL, atol=ATOL)

    @precondition(lambda self: self.pending is None)
    @rule(n_threads=st.sampled_from([1, None]))
    def start(self, n_threads: int | None) -> None:
        self.pending_value, self.pending_grads = self.reference()
        self.pending = self.prior.start(self.model, LAM, n_threads=n_threads)
        self.dirty = set()

    @precondition(lambda self: self.pending is not None)
    @rule(mode=st.sampled_from(["enable_grad", "no_grad", "inference_mode"]))
    def join(self, mode: str) -> None:
        pending, self.pending = self.pending, None
        with getattr(torch, mode)():
            if self.dirty:  # a new storage is checked first
                words = "new storage" if "new storage" in self.dirty else "changed in place"
                with pytest.raises(RuntimeError, match=words):
                    pending.join()
            else:
                value = pending.join().item()
                assert value == pytest.approx(self.pending_value, rel=RTOL, abs=ATOL)
                self.add_expected(self.pending_grads)
        self.check_grads()

    @precondition(lambda self: self.pending is not None)
    @rule()
    def cancel(self) -> None:
        self.pending.cancel()
        self.pending = None
        self.check_grads()

    @rule()
    def optimizer_step(self) -> None:
        for p in self.params:
            if p.grad is not None:
                self.touched(p, "changed in place")
        self.opt.step()

    @rule(which=st.integers(0, 7), how=st.sampled_from(["mul_", "data", "set_"]))
    def edit(self, which: int, how: str) -> None:
        p = self.params[which % len(self.params)]
        with torch.no_grad():
            if how == "mul_":
                p.mul_(0.9)
            elif how == "data":
                p.data = p.data.clone()
            else:
                p.set_(p.detach().clone())
        self.touched(p, "changed in place" if how == "mul_" else "new storage")

    @rule(threshold=st.sampled_from([0.0, 1.0, 1e9]))
    def merge(self, threshold: float) -> None:
        if self.pending is not None:
            self.refused(lambda: self.prior.merge_(self.model, threshold=threshold), "merge_")
            return
        self.prior.merge_(self.model, threshold=threshold)
        for p in self.prior.parameters():
            self.expected[id(p)] = None
        self.generation += 1

    def refused(self, call: Any, step: str) -> None:
        """``call`` must refuse with its words and change no tensor."""
        before = [p.detach().clone() for p in self.params]
        with pytest.raises(RuntimeError, match=rf"^{step} while a penalty started with prior"):
            call()
        assert all(torch.equal(p, b) for p, b in zip(self.params, before))

    def quantized_by_reference(self) -> list[np.ndarray]:
        mixture = self.prior.mixture()
        values = []
        for w in self.weights():
            comps = reference.assign(w.detach().numpy().copy(), mixture)
            values.append(np.where(comps == 0, 0.0, mixture.mu[comps]).astype(np.float32))
        return values

    @rule()
    def quantize(self) -> None:
        if self.pending is not None:
            self.refused(lambda: self.prior.quantize_(self.model), "quantize_")
            return
        want = self.quantized_by_reference()
        self.state = self.prior.quantize_(self.model)
        self.state_generation = self.generation
        for w, v in zip(self.weights(), want):
            np.testing.assert_array_equal(w.detach().numpy(), v)

    @precondition(lambda self: self.state is not None)
    @rule(refit=st.booleans())
    def requantize(self, refit: bool) -> None:
        if self.pending is not None:
            self.refused(lambda: self.prior.requantize_(self.model, self.state), "requantize_")
            return
        if self.state_generation != self.generation:
            with pytest.raises(ValueError, match="made before merge_ changed"):
                self.prior.requantize_(self.model, self.state, refit=refit)
            return
        self.state = self.prior.requantize_(self.model, self.state, refit=refit)
        for (name, w), (n, v) in zip(
            self.prior.named_penalized_parameters(self.model), self.state.weights().items()
        ):
            assert name == n
            np.testing.assert_array_equal(w.detach().numpy(), v.numpy())

    @rule()
    def snapshot(self) -> None:
        want = self.quantized_by_reference()
        for got, v in zip(self.prior.snapshot(self.model).weights().values(), want):
            np.testing.assert_array_equal(got.numpy(), v)

    @rule(use_state=st.booleans(), into_self=st.booleans())
    def save_and_load(self, use_state: bool, into_self: bool) -> None:
        state = self.state if use_state and self.state_generation == self.generation else None
        path = _FILES / f"m{time.monotonic_ns()}.sws"
        sst.save_compressed(path, self.model, self.prior, state=state)
        quantized = (state or self.prior.snapshot(self.model)).weights()
        kept = {n: t.detach().clone() for n, t in self.model.state_dict().items()}
        target, prior = (self.model, self.prior) if into_self else _copies(self.model, self.prior)
        if into_self:
            for t in (*target.parameters(), *prior.parameters()):
                self.touched(t, "changed in place")
        sst.load_compressed(path, target, prior)
        path.unlink()
        loaded = target.state_dict()
        for name, value in kept.items():
            want = quantized.get(name, value)
            np.testing.assert_array_equal(loaded[name].numpy(), want.numpy())
        np.testing.assert_array_equal(prior.mixture().mu, self.prior.mixture().mu)

    # ---- after every step -------------------------------------------------

    @invariant()
    def penalty_matches_the_reference(self) -> None:
        value, _ = self.reference()
        with torch.no_grad():
            got = self.prior(self.model, LAM).item()
        assert got == pytest.approx(value, rel=RTOL, abs=ATOL)

    def teardown(self) -> None:
        if self.pending is not None:
            self.pending.cancel()


def _copies(model: torch.nn.Module, prior: sst.MixturePrior) -> tuple[Any, Any]:
    """Copies to load into, their values scrambled (a load must set every one)."""
    target, other = copy.deepcopy(model), copy.deepcopy(prior)
    with torch.no_grad():
        for t in (*target.parameters(), *target.buffers(), *other.parameters()):
            if t.is_floating_point():
                t.fill_(7.0)
    return target, other


@pytest.mark.usefixtures("one_torch_thread")
def test_random_sequences_of_recipe_and_step_calls() -> None:
    PriorMachine.runs = 0
    run_state_machine_as_test(
        PriorMachine,
        settings=settings(
            max_examples=SEQUENCES,
            stateful_step_count=STEPS,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )
    assert PriorMachine.runs >= SEQUENCES
