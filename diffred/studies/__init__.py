"""The four studies, one subpackage each, of one shape: ``method`` (the computation and the
verbs a page calls), ``report`` (tables, charts, findings text), ``paper`` (sourced constants
and verdict rules) where the study has them.  A study imports :mod:`diffred.core` only, never
another study or :mod:`diffred.core.display`."""
