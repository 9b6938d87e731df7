"""bytecache: safe, code-change-aware persistent memoization."""

from bytecache import _bytecache

__version__ = _bytecache.__version__
