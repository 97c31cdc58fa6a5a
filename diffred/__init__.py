"""diffred: redundancy in pretrained neural representations — the support package of the book.

Three layers, one direction of dependency (``ARCHITECTURE.md``): :mod:`diffred.core`
(data, models, features, probes, similarity, precision, training, cache, display),
:mod:`diffred.studies` (the four studies, each ``method`` / ``report`` / ``paper``), and
:mod:`diffred.book` (chapter prologue, parameters, results, provenance, CLI).

Verbs: :func:`features` (cached extraction), :func:`probe_accuracy` (batched linear probes),
:func:`linear_cka`, :func:`load_dataset`, :func:`load_model`, :func:`reader_table`;
:func:`results.load` reads a chapter's tables back with their dtypes and provenance.
"""
from diffred._version import __version__  # noqa: F401
from diffred.book import results
from diffred.book.chapter import Chapter
from diffred.core.datasets import DATASETS, load_dataset
from diffred.core.display import reader_table
from diffred.core.extract import Features, features
from diffred.core.models import MODELS, load_model
from diffred.core.probe import LinearProbe, probe_accuracy
from diffred.core.similarity import MinibatchCKA, cka_matrix, linear_cka

__all__ = ["Chapter", "DATASETS", "MODELS", "Features", "LinearProbe", "MinibatchCKA", "cka_matrix",
           "features", "linear_cka", "load_dataset", "load_model", "probe_accuracy",
           "reader_table", "results"]
