"""Words that carry no meaning of their own, shared by the citation verifier (which leaves them out of
the content words it compares) and the ranking (which leaves them out of a BM25 query)."""

from __future__ import annotations

import builtins
import keyword
import re

__all__ = ["QUERY_STOP_WORDS", "STOP_WORDS"]

STOP_WORDS = frozenset(
    re.findall(
        r"\w+",
        """a an the and or but if then else of to in on at by for with from as is are was were be been being
        it its this that these those there here which who whom whose what when where why how not no can could
        may might must shall should will would do does did done has have had having you your yours we our they
        their them he she his her i me my so than too very just also only into out over under about such each
        any all some more most other another same own both few many much one ones use used using uses""",
    )
)
#: the stop words a question about Python may still mean as Python: ``else``, ``finally``, ``all``, ``any``
#: are keywords and built-in names there, not filler
QUERY_STOP_WORDS = STOP_WORDS - frozenset(keyword.kwlist) - frozenset(dir(builtins))
