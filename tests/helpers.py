"""Small shared helpers for the tests."""

import jax.random as jr

import flowdip as fd


def two_layer_objective(
    seed=0,
    *,
    m=6,
    n=10,
    k=40,
    d=5,
    activation=None,
    loss=None,
    reduced=None,
    scaling="1/m",
    noise_std=0.0,
):
    """A small compressed-sensing objective with the paper's two-layer DIP."""
    kp, kn = jr.split(jr.key(seed))
    problem = fd.InverseProblem.compressed_sensing(kp, m, n, scaling=scaling, noise_std=noise_std)
    net = fd.TwoLayerDIP.init(kn, d=d, k=k, n=n, activation=activation or fd.Sigmoid())
    return fd.Objective(problem, net, loss or fd.MSE(), reduced=reduced)
