"""diffred: redundancy in pretrained neural representations — the support package of the book.

Verbs: :func:`features` (cached extraction), :func:`probe_accuracy` (batched linear probes),
:func:`linear_cka`, :func:`load_dataset`, :func:`load_model`.
"""
from ._version import __version__  # noqa: E402,F401

from .chapter import Chapter  # noqa: E402
from .datasets import DATASETS, load_dataset  # noqa: E402
from .models import MODELS, load_model  # noqa: E402
from .extract import Features, features  # noqa: E402
from .probe import LinearProbe, probe_accuracy  # noqa: E402
from .similarity import MinibatchCKA, cka_matrix, linear_cka  # noqa: E402

__all__ = ["Chapter", "DATASETS", "MODELS", "Features", "LinearProbe", "MinibatchCKA", "cka_matrix",
           "features", "linear_cka", "load_dataset", "load_model", "probe_accuracy"]
