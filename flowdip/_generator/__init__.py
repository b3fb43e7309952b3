"""Generators `x = g(u, θ)`: activations with their constants, the two-layer DIP and the MLP
(`networks`), the convolutional DIP (`convdip`)."""
