"""The workflow's Python side: params validation, grid expansion, tables, planning."""

from iterconv.errors import ParamsError

__all__ = ["ParamsError"]
