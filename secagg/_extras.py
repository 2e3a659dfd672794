"""Lazy import of optional dependencies with a message that names the extra."""

from __future__ import annotations

import importlib
from types import ModuleType

from secagg.errors import MissingExtraError

__all__ = ["require"]


def require(module: str, extra: str) -> ModuleType:
    """Import ``module`` or raise :class:`MissingExtraError` naming ``extra``.

    Parameters
    ----------
    module:
        Dotted module name, e.g. ``"tenseal"``.
    extra:
        The pip extra that installs it, e.g. ``"he"``.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise MissingExtraError(
            f"{module!r} is not installed; install the extra: pip install 'secagg[{extra}]'"
        ) from exc
