"""Optional dependencies: imported where they are used, and a missing one is one line that names its extra."""

import importlib
from types import ModuleType


class MissingExtraError(ImportError):
    """An optional dependency is not installed; the message names the ``pip install`` that brings it."""


def import_optional(module: str, extra: str, purpose: str) -> ModuleType:
    """``importlib.import_module(module)``, or :class:`MissingExtraError` saying which extra to install.

    Args:
        module: the module to import, e.g. ``"onnxruntime"``.
        extra: the ssseg extra that installs it: ``"serve"``, ``"ray"`` or ``"onnx"``.
        purpose: what needs it, for the message, e.g. ``"ssseg-samv2 serve"``.
    """
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise MissingExtraError(
            f"{purpose} needs the optional package '{module.split('.')[0]}', which is not installed "
            f"({error}); install it with: pip install 'ssseg[{extra}]'"
        ) from None
