"""Practice's optimizers (Optax: Adam, SGD with momentum, …) as a discrete dynamics, so that
`solve`, `compare`, `sweep` and the plots treat them like gradient descent."""

from collections.abc import Callable
from typing import Any, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import optax

from .._objective import Objective
from .._typing import Array, Float, is_concrete, PyTree
from .base import AbstractDiscreteDynamics, as_step_size, check_positive_scalar


# The usual spelling of Optax's best-known optimizers in labels; others keep their function name.
_NAMES = {
    "adam": "Adam",
    "adamw": "AdamW",
    "sgd": "SGD",
    "rmsprop": "RMSprop",
    "adagrad": "Adagrad",
    "nadam": "NAdam",
    "lion": "Lion",
    "lamb": "LAMB",
}


def _default_name(optimizer) -> str:
    name = getattr(optimizer, "__name__", "")
    return _NAMES.get(name, name) if name.isidentifier() else "optax"


def _promotion():
    # Optax mixes Python floats with its int32 step counters (Adam's bias correction `b1**t`),
    # which JAX's strict dtype promotion refuses; its own code runs under the standard rules.
    return jax.numpy_dtype_promotion("standard")


class OptaxBaseline(AbstractDiscreteDynamics):
    """One update of an Optax optimizer per step, on `F`: the optimizers of practice as a
    baseline for the flow and for plain descent.

    `OptaxBaseline(optax.adam, learning_rate=1e-2)` runs Adam; `optax.sgd` with learning rate
    `η` is [`flowdip.GradientDescent`][]`(η)` step for step. The optimizer is given as its
    constructor (`optax.adam`, not `optax.adam(1e-2)`), and the transformation is built inside
    each traced step from the learning rate, which is an array: `with_step_size` then changes
    it without recompiling, and a family of learning rates can be run under `jax.vmap`. Any
    callable `f(learning_rate, **hyperparams)` that returns an
    `optax.GradientTransformation` works, e.g.
    `lambda learning_rate: optax.chain(optax.clip(1.0), optax.adam(learning_rate))`.

    **Time.** The step size is the learning rate, so step `τ` is saved at time `τ·lr`, as for
    descent. For SGD this is the flow's time (explicit Euler). For an adaptive optimizer
    (Adam, RMSprop, …) it is only a step count scaled by `lr`: Adam's step has length about
    `lr` per coordinate whatever the gradient, and it discretises no flow in `t`.

    **The state** is `(θ, optimizer state)` on the generic path. On the
    [reduced two-layer path](../concepts.md#reduced-path) the objective moves `z = W u`, and
    its gradient is `∇_W F · u`, the velocity of `z` under `W' = −∇_W F`. SGD applied to `z`
    would be SGD in `W`, but an adaptive optimizer would not: with `∇_W F = a uᵀ`, Adam in `W`
    steps by `−lr·(m̂/√v̂)(a)·sign(u)ᵀ` (as `ε → 0`), which is not along `uᵀ` and moves `z`
    by `‖u‖₁` times the step of Adam applied to `z`. So on this path the optimizer runs on `W`
    itself, with the exact gradient `∇_W F = (∇_W F · u) uᵀ/‖u‖²`, and the state is
    `(z, W, optimizer state)` with `z = W u`: losses, signals and recovery errors are those of
    the optimizer on the generic path (`reduced=False`) to round-off. The trajectory's
    `params`, `displacement` and `final_generator` are those of the rank-one lift of `z`
    ([`flowdip.Objective.lift`][]), the least-norm `W` with the same pre-activations and so
    the same signal. The optimizer's own `W` is `Trajectory.final_state[1]`; its distance
    `‖W − W₀‖_F` is at least the recorded displacement, and larger once `W` leaves
    `W₀ + (·)uᵀ` (Adam's does at its first step, SGD's never).

    **Arguments:**

    - `optimizer`: an Optax optimizer's constructor, such as `optax.adam` or `optax.sgd`.
    - `learning_rate`: `lr > 0`, also the time one step takes.
    - `name`: the name in labels (default: from the constructor, `Adam`, `SGD`, …).
    - `**hyperparams`: further arguments of the constructor (`b1=0.8`, `momentum=0.9`, …).
    """

    unroll: ClassVar[int] = 4
    short_name: ClassVar[str] = "Optax"
    optimizer: Callable[..., optax.GradientTransformation] = eqx.field(static=True)
    step_size: Float[Array, ""]
    hyperparams: dict[str, Any]
    name: str = eqx.field(static=True)

    def __init__(self, optimizer, learning_rate, *, name: str | None = None, **hyperparams):
        if isinstance(optimizer, optax.GradientTransformation):
            raise TypeError(
                "optimizer must be an Optax optimizer's constructor, such as optax.adam, so "
                "that the learning rate stays an array (with_step_size then does not "
                "recompile); got a built GradientTransformation. Write "
                "OptaxBaseline(optax.adam, learning_rate=1e-2) rather than "
                "OptaxBaseline(optax.adam(1e-2), …)."
            )
        if not callable(optimizer):
            raise TypeError(
                "optimizer must be an Optax optimizer's constructor, such as optax.adam; got "
                f"{optimizer!r}."
            )
        label = _default_name(optimizer)
        try:
            built = optimizer(learning_rate=1.0, **hyperparams)
        except TypeError as error:
            raise TypeError(
                f"optimizer {label} cannot be built as {label}(learning_rate=…"
                f"{''.join(f', {k}=…' for k in hyperparams)}): {error}"
            ) from None
        if not isinstance(built, optax.GradientTransformation):
            raise TypeError(
                "optimizer must return an optax.GradientTransformation; "
                f"{label}(learning_rate=…) returned {type(built).__name__}."
            )
        if name is not None and not (isinstance(name, str) and name.strip()):
            raise TypeError(f"name must be a non-empty string; got name={name!r}.")
        self.optimizer = optimizer
        self.step_size = as_step_size(learning_rate, "learning_rate")
        self.hyperparams = dict(hyperparams)
        self.name = label if name is None else name

    def __check_init__(self):
        check_positive_scalar("learning_rate", self.step_size)

    @property
    def learning_rate(self) -> Float[Array, ""]:
        """The learning rate: the step size."""
        return self.step_size

    def label(self) -> str:
        """`<name> lr=<learning rate>` (`Adam lr=0.01`)."""
        if is_concrete(self.step_size):
            return f"{self.name} lr={float(self.step_size):g}"
        return self.name

    def _transformation(self, objective: Objective) -> optax.GradientTransformation:
        # Built at trace time from the traced learning rate, in the objective's precision.
        return self.optimizer(
            learning_rate=self.step_size.astype(objective.dtype), **self.hyperparams
        )

    def initial_state(self, objective: Objective, theta0: PyTree) -> PyTree:
        """`(θ₀, opt.init(θ₀))`; on the reduced path `(z₀, W₀, opt.init(W₀))`, `W₀` the lift
        of `z₀`."""
        opt = self._transformation(objective)
        with _promotion():
            if objective.reduced:
                W = objective.lift(theta0).W
                return theta0, W, opt.init(W)
            return theta0, opt.init(theta0)

    def parameters(self, state: PyTree) -> PyTree:
        """`θ` (`z` on the reduced path)."""
        return state[0]

    def step(self, objective: Objective, state: PyTree) -> tuple[Float[Array, ""], PyTree]:
        """`F(θ)` and one optimizer update from `∇F(θ)` (`∇_W F` on the reduced path)."""
        opt = self._transformation(objective)
        if objective.reduced:
            z, W, opt_state = state
            value, gz = objective.value_and_gradient(z)
            u = objective.generator.u
            # `gz = ∇_W F · u`, and `∇_W F` is rank one along `uᵀ`.
            grad = jnp.outer(gz, u) / objective.u_norm2
            with _promotion():
                updates, opt_state = opt.update(grad, opt_state, W)
                W = optax.apply_updates(W, updates)
            return value, (W @ u, W, opt_state)
        theta, opt_state = state
        value, grad = objective.value_and_gradient(theta)
        with _promotion():
            updates, opt_state = opt.update(grad, opt_state, theta)
            theta = optax.apply_updates(theta, updates)
        return value, (theta, opt_state)
