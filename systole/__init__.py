"""Systole: an open fp8 matrix-multiply accelerator with exact accumulation."""

from .config import SystoleConfig

__all__ = ["SystoleConfig"]
__version__ = "0.1.0"
