"""Integer CDF tables held as int32 buffers of an entropy model (`cdfs`: rows padded with
2**precision, `cdf_lengths`, `offsets`: lowest symbol per row), so they travel in checkpoints and
encoder and decoder use identical ones. Packing, loading at any width and validating live here
once, for the factorized prior and the Gaussian conditional alike."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import nn

from mobilecodec.entropy.coder import CodingTables, cached_tables
from mobilecodec.errors import CheckpointError

TABLE_BUFFERS = ("cdfs", "cdf_lengths", "offsets")


def pack_cdf_rows(rows: Sequence[np.ndarray], precision: int) -> tuple[np.ndarray, np.ndarray]:
    """(cdfs, lengths) int32 of CDF rows of different lengths: rows padded with 2**precision."""
    width = max(len(r) for r in rows)
    cdfs = np.full((len(rows), width), 1 << precision, dtype=np.int32)
    for i, r in enumerate(rows):
        cdfs[i, : len(r)] = r
    return cdfs, np.array([len(r) for r in rows], dtype=np.int32)


class CdfTableModule(nn.Module):
    """Base of the entropy models that code with integer CDF tables in the buffers
    `TABLE_BUFFERS`; a subclass sets `precision` and names its tables in `table_name`."""

    table_name = "CDF"  # what error messages call one table
    precision: int

    def tables(self) -> tuple[list[np.ndarray], np.ndarray]:
        """(integer pmf per table, lowest symbol per table) after checking the buffers."""
        t = self.coding_tables()
        return t.pmfs, t.offsets

    def coding_tables(self) -> CodingTables:
        """Validated tables and constriction models, built once per state of the buffers."""
        return cached_tables(self, (self.cdfs, self.cdf_lengths, self.offsets), self._build_coding)

    def _build_coding(self) -> CodingTables:
        cdfs = self.cdfs.detach().cpu().numpy().astype(np.int64)
        lengths = self.cdf_lengths.detach().cpu().numpy().astype(np.int64)
        offsets = self.offsets.detach().cpu().numpy().astype(np.int64)
        if cdfs.ndim != 2 or lengths.shape != (cdfs.shape[0],) or offsets.shape != lengths.shape:
            raise CheckpointError(f"{self.table_name} tables have inconsistent shapes")
        total = 1 << self.precision
        pmfs = []
        for i, n in enumerate(lengths):
            if not 3 <= n <= cdfs.shape[1]:
                raise CheckpointError(f"{self.table_name} table {i} has invalid length {n}")
            c = cdfs[i, :n]
            if c[0] != 0 or c[-1] != total or np.any(np.diff(c) < 1):
                raise CheckpointError(f"{self.table_name} table {i} is not a valid {self.precision}-bit CDF")
            pmfs.append(np.diff(c))
        return CodingTables(pmfs, offsets, cdfs, lengths, self.precision)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # noqa: D401
        # The checkpoint's tables are authoritative: take their shapes, whatever the width.
        for name in TABLE_BUFFERS:
            key = prefix + name
            if key in state_dict:
                self.register_buffer(name, torch.zeros_like(state_dict[key]))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
