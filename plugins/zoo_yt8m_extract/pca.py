"""Google's PCA of the features and the 8-bit quantization of the YouTube-8M records.

RGB (``yt8m_pca.tgz``): ``((x - mean) @ eigenvecs[:1024].T) / sqrt(eigenvals[:1024] + 1e-4)``.
Audio (``vggish_pca_params.npz``): ``(x - pca_means) @ pca_eigen_vectors.T``.
MediaPipe's ``*_matrix_data.pb`` hold a mean and a projection with the whitening already folded in.
Everything is computed in float32, as Google's graph does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

QUANT_MIN = -2.0
QUANT_MAX = 2.0


@dataclass(frozen=True)
class Pca:
    """``apply(x) = ((x - mean) @ matrix.T) / scale`` for rows ``x`` of ``[n, in_dim]``."""

    mean: np.ndarray  # [in_dim]
    matrix: np.ndarray  # [out_dim, in_dim]
    scale: np.ndarray  # [out_dim]

    @property
    def in_dim(self) -> int:
        return int(self.matrix.shape[1])

    @property
    def out_dim(self) -> int:
        return int(self.matrix.shape[0])

    def apply(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32).reshape(-1, self.in_dim)
        return ((x - self.mean) @ self.matrix.T) / self.scale


def whitening_pca(mean: np.ndarray, eigenvecs: np.ndarray, eigenvals: np.ndarray, dim: int) -> Pca:
    """Google's RGB PCA from ``mean.npy`` ``[in, 1]``, ``eigenvecs.npy`` ``[>=dim, in]`` (one component per
    row) and ``eigenvals.npy`` ``[>=dim, 1]``."""
    vals = np.asarray(eigenvals, dtype=np.float32).reshape(-1)[:dim]
    return Pca(
        mean=np.asarray(mean, dtype=np.float32).reshape(-1),
        matrix=np.ascontiguousarray(np.asarray(eigenvecs, dtype=np.float32)[:dim]),
        scale=np.sqrt(vals + np.float32(1e-4)).astype(np.float32),
    )


def projection_pca(mean: np.ndarray, projection: np.ndarray) -> Pca:
    """A mean and a projection ``[out, in]`` (VGGish's npz, MediaPipe's matrix files): no whitening step."""
    projection = np.ascontiguousarray(np.asarray(projection, dtype=np.float32))
    return Pca(
        mean=np.asarray(mean, dtype=np.float32).reshape(-1),
        matrix=projection,
        scale=np.ones(projection.shape[0], dtype=np.float32),
    )


def quantize(x: np.ndarray) -> np.ndarray:
    """Google's ``quantize``: clip to [-2, 2], scale to 0..255, round half to even (Python's ``round``)."""
    x = np.clip(np.asarray(x, dtype=np.float32), QUANT_MIN, QUANT_MAX)
    scaled = (x - np.float32(QUANT_MIN)) * np.float32(255.0 / (QUANT_MAX - QUANT_MIN))
    return np.rint(scaled).astype(np.uint8)
