"""Host-side helpers on torch tensors that do not import torch: numpy views of tensors (the host
steps take tensors or arrays alike) and the digest that names a model's weights in stream headers."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import numpy as np


def to_numpy(t: Any) -> np.ndarray:
    """`t` as a numpy array: a torch tensor detached and moved to the CPU, anything else as given."""
    return t.detach().cpu().numpy() if hasattr(t, "detach") else np.asarray(t)


def state_digest(state: Mapping[str, Any], salt: bytes = b"") -> bytes:
    """16-byte SHA-256 digest of `salt` and every named tensor (names, dtypes, shapes, values), in
    name order; `salt` keeps digests of different model kinds apart."""
    h = hashlib.sha256(salt)
    for name, t in sorted(state.items()):
        a = t.detach().cpu().contiguous().numpy()
        h.update(name.encode())
        h.update(str(a.dtype).encode())
        h.update(np.asarray(a.shape, dtype=np.int64).tobytes())
        h.update(a.tobytes())
    return h.digest()[:16]
