"""Arrow arrays from numpy arrays and lists of str, built from their buffers rather than by `pa.array()`.

`pa.array()` asks, on its first call in a process, whether its input is a pandas object, and to answer it
imports pandas (pyarrow's pandas shim): ~0.3 CPU-s, holding the GIL, on the builder thread at the archiver's
first file, which stalls the loop too. The archiver never needs pandas; these build the same arrays from
buffers (numbers zero-copy), so it is never imported.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa


def numeric(values: np.ndarray, type_: pa.DataType, nulls: np.ndarray | None = None) -> pa.Array:
    """`values` (its dtype the width of `type_`) as an Arrow array; `nulls`: True where a value is null."""
    values = np.ascontiguousarray(values)
    assert values.dtype.itemsize * 8 == type_.bit_width, (values.dtype, type_)
    validity, null_count = None, 0
    if nulls is not None and nulls.any():
        validity = pa.py_buffer(np.packbits(~nulls, bitorder="little"))  # Arrow: bit set = valid, LSB first
        null_count = int(nulls.sum())
    return pa.Array.from_buffers(type_, len(values), [validity, pa.py_buffer(values)], null_count=null_count)


def strings(texts: Sequence[str]) -> pa.Array:
    """`texts` as an Arrow string array (UTF-8; a str that cannot be encoded raises, as `pa.array` does)."""
    data = [t.encode() for t in texts]
    offsets = np.zeros(len(data) + 1, np.int32)
    np.cumsum([len(b) for b in data], out=offsets[1:])
    return pa.Array.from_buffers(pa.string(), len(data), [None, pa.py_buffer(offsets), pa.py_buffer(b"".join(data))])
