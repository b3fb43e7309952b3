"""What conditioning and noise alone allow, per operator, image and noise level: the image's
coefficients in the operator's singular basis, and the error of the oracle diagonal filter
in that basis (docs/theory.md §11.3).

For `A = U Σ Vᵀ` and noise of standard deviation `s` per measurement, the coefficient
`c_i = v_iᵀ x̄` is observed as `σ_i c_i + s ξ_i`. The best estimate of it by a filter
`f_i (uᵢᵀ y)/σ_i` that knows `x̄` (an oracle) has squared error `min(c_i², s²/σ_i²)`,
within a factor two of the best the data allow for any estimator that is diagonal in this basis
(Donoho and Johnstone's ideal risk); the kernel of `A` is not observed at all, and only a
prior can fill it. The sum of the two is what a reconstruction owes the operator and the
noise, whatever the network.
"""

import dataclasses

import numpy as np

from .._problem.blur import Blur
from .._problem.operators import AbstractImagingOperator


@dataclasses.dataclass(frozen=True)
class Spectrum:
    """An image in an operator's singular basis.

    - `sigma`: the singular values `σ_i`, descending (non-zero ones only);
    - `coefficients`: `|v_iᵀ x̄|` in the same order (moduli of the unitary Fourier
      coefficients for a circular blur, whose singular vectors are the Fourier modes);
    - `kernel_energy`: `‖P_ker(A) x̄‖²`, the part of `x̄` the data do not see.
    """

    sigma: np.ndarray
    coefficients: np.ndarray
    kernel_energy: float

    @property
    def norm(self) -> float:
        """`‖x̄‖`: its row-space coefficients and its kernel part together."""
        return float(np.sqrt((self.coefficients**2).sum() + self.kernel_energy))

    def picard(self) -> np.ndarray:
        """`σ_i |v_iᵀ x̄|`: the clean data in the singular basis, against which the noise's
        standard deviation per coefficient is the same `s` for every `i` (white noise)."""
        return self.sigma * self.coefficients

    def ideal_error(self, noise_std: float) -> tuple[float, float]:
        """The oracle diagonal filter's error `(row space, kernel)`, each relative to `‖x̄‖`:
        `√Σ min(c_i², s²/σ_i²)/‖x̄‖` and `‖P_ker x̄‖/‖x̄‖`."""
        c2 = self.coefficients**2
        norm2 = self.norm**2
        with np.errstate(divide="ignore"):
            noise = np.where(self.sigma > 0, (noise_std / self.sigma) ** 2, np.inf)
        row = float(np.sqrt(np.minimum(c2, noise).sum() / norm2))
        return row, float(np.sqrt(self.kernel_energy / norm2))

    def drowned(self, noise_std: float) -> float:
        """The fraction of `x̄`'s energy in the row space whose coefficients the noise
        drowns (`σ_i |c_i| < s`)."""
        c2 = self.coefficients**2
        return float(c2[self.picard() < noise_std].sum() / c2.sum())


def spectrum(operator: AbstractImagingOperator, image: np.ndarray) -> Spectrum:
    """`image` (`h × w`) in the singular basis of `operator`, in float64: by the FFT for a
    circular blur, by a dense SVD otherwise."""
    x = np.asarray(image, np.float64)
    if isinstance(operator, Blur) and operator.method == "fft":
        # In float64 whatever the run's precision: the blur's smallest singular values
        # (about 2e-10) are below float32's resolution of its largest.
        kernel = np.asarray(operator.kernel, np.float64)
        full = np.zeros(operator.image_shape)
        full[: kernel.shape[0], : kernel.shape[1]] = kernel
        full = np.roll(full, (-(kernel.shape[0] // 2), -(kernel.shape[1] // 2)), axis=(0, 1))
        sigma = np.abs(np.fft.fft2(full)).ravel()
        coefficients = np.abs(np.fft.fft2(x, norm="ortho")).ravel()
        order = np.argsort(-sigma, kind="stable")
        return Spectrum(sigma[order], coefficients[order], 0.0)
    A = np.asarray(operator.as_matrix(), np.float64)
    _, sigma, vt = np.linalg.svd(A, full_matrices=False)
    keep = sigma > sigma[0] * max(A.shape) * np.finfo(np.float64).eps
    coefficients = np.abs(vt[keep] @ x.ravel())
    kernel = max(float(x.ravel() @ x.ravel() - coefficients @ coefficients), 0.0)
    return Spectrum(sigma[keep], coefficients, kernel)
