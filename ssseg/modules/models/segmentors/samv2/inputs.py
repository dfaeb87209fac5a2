"""Checked conversion of user-given prompt values (numpy arrays, torch tensors on any device, nested lists).

Every predictor entry point turns its array arguments into numpy through :func:`numeric_array`, so that anything
that is not a finite numeric array fails here, with a ``TypeError`` / ``ValueError`` that names the argument,
instead of deep inside numpy or torch (or, worse, as NaN masks).
"""

import numbers
from typing import Any

import numpy as np
import torch

# numpy dtype kinds accepted as numbers: bool, signed / unsigned integers, floats
NUMERIC_KINDS = "biuf"


def numeric_array(value: Any, name: str, finite: bool = True) -> np.ndarray:
    """``value`` as a float64 numpy array (same shape), or an error naming ``name``.

    Args:
        value: a numpy array, a torch tensor (any dtype and device; copied to the CPU), a nested list / tuple of
            numbers or a single number.
        name: the argument's name, for the error messages.
        finite: refuse NaN and infinite values.

    Raises:
        TypeError: not numeric (strings, None inside, objects, complex numbers) or a tensor without data ('meta').
        ValueError: a ragged nested list, or non-finite values with ``finite``.
    """
    if isinstance(value, torch.Tensor):
        if value.device.type == "meta":
            raise TypeError(f"{name} is a tensor on the 'meta' device, which holds no values; pass real data")
        if value.is_complex():
            raise TypeError(f"{name} must be real numbers, got a {value.dtype} tensor")
        value = value.detach().to("cpu", torch.float64).numpy()
    if isinstance(value, (str, bytes, dict, set)) or value is None:
        raise TypeError(f"{name} must be numbers (a numpy array, torch tensor or nested list), got {value!r:.80}")
    try:
        array = np.asarray(value)
    except ValueError:
        raise ValueError(f"{name} must be a regular array of numbers; got a ragged nested list {value!r:.80}") from None
    except (TypeError, OverflowError, RuntimeError):
        raise TypeError(
            f"{name} must be numbers (a numpy array, torch tensor or nested list), got {value!r:.80}"
        ) from None
    if array.dtype.kind == "O" and not all(
        isinstance(v, numbers.Real) and not isinstance(v, bool) for v in array.ravel().tolist()
    ):
        raise TypeError(f"{name} must be real numbers, got {value!r:.80}")
    if array.dtype.kind not in NUMERIC_KINDS:
        # an object array of Python numbers (e.g. ints too large for int64) is numeric if each item converts
        try:
            array = array.astype(np.float64) if array.dtype.kind == "O" else None
        except (TypeError, ValueError, OverflowError):
            array = None
        if array is None:
            raise TypeError(f"{name} must be real numbers, got {value!r:.80}")
    with np.errstate(over="ignore"):  # int64 / uint64 beyond 2**53 round, which is fine for pixel values
        array = array.astype(np.float64)
    if finite and not np.all(np.isfinite(array)):
        raise ValueError(f"{name} must be finite (no NaN or inf), got {array.ravel()[:8].tolist()}")
    return array


def flag(value: Any, name: str) -> bool:
    """A boolean option: ``True`` / ``False`` (numpy bools and 0 / 1 too); anything else is a ``TypeError``, since
    a string such as ``"False"`` would otherwise silently count as true."""
    if isinstance(value, (bool, np.bool_)) or (isinstance(value, (int, np.integer)) and value in (0, 1)):
        return bool(value)
    raise TypeError(f"{name} must be True or False, got {value!r:.80}")
