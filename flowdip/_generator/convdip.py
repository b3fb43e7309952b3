"""`ConvDIP`: a small convolutional Deep Image Prior (an upsampling decoder) built from
Equinox layers, as a [`flowdip.AbstractGenerator`][]."""

import math
from collections.abc import Sequence

import equinox as eqx
import jax
import jax.random as jr
import numpy as np

from .._typing import Array, check_int, check_real, checked, Float, PRNGKeyArray, PyTree, Size
from .activations import AbstractActivation, Tanh
from .networks import _default_dtype, AbstractGenerator, check_activation, positive_int


def _stage_sizes(image_shape: tuple[int, int], num_upsamples: int) -> tuple[tuple[int, int], ...]:
    # Sizes ⌈h/2^j⌉ from the coarsest to the image itself: every stage at most doubles, and
    # any (h, w) is reached exactly (no divisibility by 2^L needed).
    h, w = image_shape
    return tuple((math.ceil(h / 2**j), math.ceil(w / 2**j)) for j in range(num_upsamples, -1, -1))


class ConvDIP(AbstractGenerator):
    """A convolutional generator `x = g(z, θ)` in the spirit of Ulyanov et al.'s Deep Image
    Prior: a fixed random input tensor `z`, then `L` stages of *3×3 convolution → smooth
    activation → bilinear ×2 upsampling*, a last 3×3 convolution and activation at full size,
    and a 1×1 convolution to the output channels.

    Everything is smooth (the activation is a flowdip [`flowdip.AbstractActivation`][], the
    upsampling is linear, there is no normalisation layer), so `g` is twice differentiable in
    `θ` as the theory asks; `jax.jvp`/`jax.vjp` through it give Jacobian products for the
    certificates, and it batches under `jax.vmap`/`eqx.filter_vmap` over seeds. The output is
    flattened (row-major, channels first) so that an [`flowdip.InverseProblem`][] on images of
    shape `image_shape` takes it as is; [`flowdip.ConvDIP.image`][] gives it as an image.

    **Fields:**

    - `input`: the fixed input `z`, shape `(c₀, h₀, w₀)` (frozen).
    - `convs`: the 3×3 convolutions, one per stage and one at full size (trained).
    - `head`: the 1×1 output convolution (trained).
    - `activation`: the hidden activation `φ`.
    - `output_activation`: an activation on the output (e.g. [`flowdip.Sigmoid`][] for images
      in `[0, 1]`), or `None` for a linear output (default).
    - `sizes`: the spatial size after each stage, from `(h₀, w₀)` to `image_shape`.

    Build one with [`flowdip.ConvDIP.init`][].
    """

    input: Float[Array, "c0 h0 w0"]
    convs: tuple[eqx.nn.Conv2d, ...]
    head: eqx.nn.Conv2d
    activation: AbstractActivation
    output_activation: AbstractActivation | None
    sizes: tuple[tuple[int, int], ...] = eqx.field(static=True)

    def __check_init__(self):
        check_activation("activation", self.activation)
        if self.output_activation is not None:
            check_activation("output_activation", self.output_activation)
        if len(self.convs) != len(self.sizes):
            raise ValueError(
                f"ConvDIP needs one convolution per stage: {len(self.sizes)} sizes but "
                f"{len(self.convs)} convolutions."
            )
        if self.input.ndim != 3 or self.input.shape[1:] != self.sizes[0]:
            raise ValueError(
                f"input has shape {self.input.shape}; expected (channels, *{self.sizes[0]})."
            )

    @classmethod
    @checked
    def init(
        cls,
        key: PRNGKeyArray,
        *,
        image_shape: tuple[Size, Size],
        channels: Size | Sequence[Size] = 32,
        num_upsamples: Size = 3,
        input_channels: Size | None = None,
        out_channels: Size = 1,
        activation: AbstractActivation = Tanh(),
        output_activation: AbstractActivation | None = None,
        input_scale: float = 1.0,
        padding_mode: str = "REFLECT",
        dtype=None,
    ) -> "ConvDIP":
        """A ConvDIP for images of shape `image_shape`.

        **Arguments:**

        - `key`: PRNG key (input tensor and every layer).
        - `image_shape`: the output size `(h, w)` (any positive sizes).
        - `channels`: hidden channels, one number for all stages or one per convolution
          (`num_upsamples + 1` of them).
        - `num_upsamples`: the number `L` of ×2 upsamplings; the input has size `⌈h/2ᴸ⌉ ×
          ⌈w/2ᴸ⌉`.
        - `input_channels`: channels of the input `z` (default: the first hidden width).
        - `out_channels`: 1 for grey-level images.
        - `activation`, `output_activation`: see the fields.
        - `input_scale`: `z` has i.i.d. U(−s, s) entries.
        - `padding_mode`: padding of the 3×3 convolutions (`"REFLECT"`, `"ZEROS"`,
          `"CIRCULAR"`, `"REPLICATE"`).
        - `dtype`: floating dtype (default: JAX's default float).

        Convolutions start from Equinox's default (LeCun-uniform) initialisation.
        """
        if isinstance(image_shape, str) or len(tuple(image_shape)) != 2:
            raise ValueError(f"image_shape must be (h, w); got {image_shape!r}.")
        h = positive_int("image_shape[0]", image_shape[0])
        w = positive_int("image_shape[1]", image_shape[1])
        num_upsamples = check_int("num_upsamples", num_upsamples, 0)
        sizes = _stage_sizes((h, w), num_upsamples)
        scalar = isinstance(channels, int | np.integer)
        widths = (channels,) * len(sizes) if scalar else tuple(channels)
        if len(widths) != len(sizes):
            raise ValueError(
                f"channels needs num_upsamples + 1 = {len(sizes)} values; got {len(widths)}."
            )
        widths = tuple(positive_int(f"channels[{i}]", c) for i, c in enumerate(widths))
        c_in = positive_int("input_channels", input_channels or widths[0])
        out_channels = positive_int("out_channels", out_channels)
        if not (math.isfinite(check_real("input_scale", input_scale)) and input_scale > 0):
            raise ValueError(f"input_scale must be a finite number > 0; got {input_scale!r}.")
        dtype = _default_dtype(dtype)
        k_in, k_head, *k_convs = jr.split(key, 2 + len(sizes))
        z = jr.uniform(k_in, (c_in, *sizes[0]), dtype, -input_scale, input_scale)
        fans = (c_in,) + widths[:-1]
        convs = tuple(
            eqx.nn.Conv2d(fan, width, 3, padding=1, padding_mode=padding_mode, dtype=dtype, key=kk)
            for kk, fan, width in zip(k_convs, fans, widths)
        )
        head = eqx.nn.Conv2d(widths[-1], out_channels, 1, dtype=dtype, key=k_head)
        return cls(z, convs, head, activation, output_activation, sizes)

    @property
    def image_shape(self) -> tuple[int, int]:
        """`(h, w)` of the output image."""
        return self.sizes[-1]

    @property
    def out_channels(self) -> int:
        """Channels of the output image."""
        return self.head.out_channels

    @property
    def out_size(self) -> int:
        """Signal size `n = channels·h·w`."""
        return self.out_channels * math.prod(self.image_shape)

    def image(self) -> Float[Array, "..."]:
        """The output as an image: `(h, w)` for one channel, `(c, h, w)` otherwise."""
        h = self.input
        for i, conv in enumerate(self.convs):
            if i > 0:
                # Bilinear resizing is linear in h: the net stays smooth in θ.
                h = jax.image.resize(h, (h.shape[0], *self.sizes[i]), method="bilinear")
            h = self.activation(conv(h))
        out = self.head(h)
        if self.output_activation is not None:
            out = self.output_activation(out)
        return out[0] if out.shape[0] == 1 else out

    def __call__(self) -> Float[Array, " n"]:
        """The generated image, flattened."""
        return self.image().reshape(-1)

    def trainable_filter(self) -> PyTree[bool]:
        """Every convolution weight and bias is trained; the input `z` is frozen."""
        spec = jax.tree_util.tree_map(eqx.is_inexact_array, self)
        return eqx.tree_at(lambda g: g.input, spec, False)

    def num_parameters(self) -> int:
        """`p`, the number of trained scalars."""
        trained, _ = self.partition()
        return sum(x.size for x in jax.tree_util.tree_leaves(trained))
