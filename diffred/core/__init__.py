"""The core: data, weights, features, probes, similarity, precision, training, the cache and
display helpers.  Imports nothing from :mod:`diffred.studies` or :mod:`diffred.core.display`."""
