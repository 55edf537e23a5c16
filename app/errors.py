"""Errors raised in the core and translated at the edges (CLI: one line and a non-zero exit; UI: a message).

Every message says what went wrong and what to do about it.
"""


class VerbatimError(Exception):
    """Base class: a problem a user can understand and act on."""


class CorpusError(VerbatimError):
    """The corpus folder is missing or holds nothing indexable."""


class IndexMissing(VerbatimError):
    """No index has been built yet."""


class IndexMismatch(VerbatimError):
    """The index on disk does not match this program (format, model, dimension) or is damaged."""


class BuildLocked(VerbatimError):
    """Another build holds the lock."""


class BuildFailed(VerbatimError):
    """A build on a cluster failed; the last good index is still the current one."""
