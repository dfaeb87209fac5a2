"""Shared pieces of the property-based tests: strategies over the whole input space, and the error contract.

Contract (issue 12): every input either works (finite outputs of the documented shapes) or raises one of the
allowed errors, raised inside ``ssseg`` (not deep in numpy / torch), whose message names the argument.
"""

import os
import traceback
from typing import Callable, Sequence, Tuple, Type

import hypothesis.extra.numpy as hnp
import hypothesis.strategies as st
import numpy as np
import torch

import ssseg

ALLOWED: Tuple[Type[BaseException], ...] = (ValueError, TypeError, FileNotFoundError)
SSSEG_DIR = os.path.dirname(os.path.abspath(ssseg.__file__)) + os.sep

DTYPES = [np.bool_, np.int8, np.int64, np.uint16, np.float16, np.float32, np.float64]


def assert_clean_error(error: BaseException, names: Sequence[str], allowed=ALLOWED) -> None:
    """``error`` is an allowed type, its innermost frame is in ssseg, and its message names one of ``names``."""
    where = traceback.extract_tb(error.__traceback__)[-1]
    assert isinstance(error, allowed), (
        f"{type(error).__name__}: {error} (at {where.filename}:{where.lineno}) is not one of "
        f"{[e.__name__ for e in allowed]}"
    )
    assert os.path.abspath(where.filename).startswith(SSSEG_DIR), (
        f"{type(error).__name__}: {error} was raised in {where.filename}:{where.lineno}, not inside ssseg"
    )
    message = str(error)
    assert any(name in message for name in names), f"message {message!r} names none of {list(names)}"


def outcome(call: Callable, names: Sequence[str], allowed=ALLOWED):
    """``(True, result)`` if ``call()`` works, ``(False, error)`` if it raises a clean error (else the test fails)."""
    try:
        return True, call()
    except Exception as error:  # noqa: BLE001 - any other exception is exactly what the test is looking for
        assert_clean_error(error, names, allowed)
        return False, error


def assert_finite(*arrays) -> None:
    for i, array in enumerate(arrays):
        array = array.float() if isinstance(array, torch.Tensor) else np.asarray(array, dtype=np.float64)
        finite = torch.isfinite(array).all() if isinstance(array, torch.Tensor) else np.isfinite(array).all()
        assert finite, f"output {i} of shape {tuple(array.shape)} has non-finite values"


class Quiet(tuple):
    """A fixture value that hypothesis prints as a short name in a failing example (not as whole arrays)."""

    def __repr__(self) -> str:
        return "<reference outputs>"


# ------------------------------------------------------------------------------------------------ strategies
shapes = hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=4)


@st.composite
def numeric_arrays(draw, shape=shapes):
    """numpy arrays of any numeric dtype and shape, NaN / inf / huge / negative values included."""
    dtype = draw(st.sampled_from(DTYPES))
    return draw(hnp.arrays(dtype, shape))


odd_arrays = st.sampled_from(
    [
        np.array([1, None], dtype=object),
        np.array(["1", "2"]),
        np.array([[1 + 2j, 3j]]),
        np.array([[10**30, 1]], dtype=object),
    ]
)
odd_scalars = st.sampled_from(["", "a", "1,2", b"\x00", {}, {"x": 1}, set(), 1, 1.5, -3, True, float("nan"), object()])


@st.composite
def as_container(draw, array: np.ndarray):
    """The same values as a numpy array, a nested list, a tuple, a CPU tensor or a tensor on another device ('meta'
    stands in for a GPU on a CPU-only machine)."""
    kind = draw(st.sampled_from(["numpy", "list", "tuple", "tensor", "meta"]))
    if kind == "list":
        return array.tolist()
    if kind == "tuple":
        return tuple(array.tolist()) if array.ndim else array.tolist()
    if kind in ("tensor", "meta") and array.dtype.kind in "biuf":
        tensor = torch.as_tensor(array.astype(np.int64) if array.dtype == np.uint16 else array)
        return tensor.to("meta") if kind == "meta" else tensor
    return array


@st.composite
def near_valid(draw, shape, low: float, high: float, integers=False):
    """Arrays of a valid shape (sometimes one axis off), mostly valid values with an odd one sometimes."""
    shape = list(shape)
    if shape and draw(st.integers(0, 4)) == 0:
        axis = draw(st.integers(0, len(shape) - 1))
        shape[axis] = draw(st.integers(0, 3))
    if integers:
        elements = st.one_of(st.integers(int(low), int(high)), st.sampled_from([-1, 2, 3, 7, -5]))
        array = draw(hnp.arrays(np.int64, tuple(shape), elements=elements))
    else:
        elements = st.one_of(
            st.floats(low, high, width=32),
            st.sampled_from([float("nan"), float("inf"), -1.0, 1e30, 1e300, high + 1.0]),
        )
        array = draw(hnp.arrays(np.float64, tuple(shape), elements=elements))
    return draw(as_container(array))


def anything(valid: st.SearchStrategy) -> st.SearchStrategy:
    """``valid``-ish values most of the time, then arbitrary arrays, odd arrays and odd scalars."""
    return st.one_of(
        valid,
        valid,
        numeric_arrays().flatmap(as_container),
        odd_arrays,
        odd_scalars,
    )
