"""Injection-recovery selection function: grid, hosts (with optional degradation), realism gates, Bayesian
binomial completeness, the lookup table and its query API.

>>> from lensaudit.selection import SelectionFunction   # doctest: +SKIP
>>> sf = SelectionFunction.load("selection_function.fits")  # doctest: +SKIP
>>> sf.completeness([1.5], [1.3], [24.0])  # doctest: +SKIP
"""

from lensaudit.selection.table import SelectionFunction

__all__ = ["SelectionFunction"]
