"""Every model and dataset by short name — the built-in registry and installed plugins — where
it comes from, its licence, whether it is here (for a dataset: found where, or the command that
fetches it)."""
from __future__ import annotations


def assets_table():
    """A DataFrame: name, kind, source, licence, available, how to get it."""
    import pandas as pd

    from diffred.core.datasets import DATASETS, dataset_available, manifest_files, registered_datasets
    from diffred.core.models import MODELS, model_available, registered_models
    rows = []
    for name, spec in registered_models().items():
        ok = model_available(name)
        plugin = "" if name in MODELS else " (plugin)"
        rows.append({"name": name, "kind": f"model/{spec.kind}{plugin}", "source": spec.source,
                     "licence": spec.licence, "available": "yes" if ok else "no",
                     "how to get": "" if ok else spec.how_to_get})
    for name, spec in registered_datasets().items():
        ok, where = dataset_available(name)
        how = f"missing — `diffred data fetch {name}`" if manifest_files(name) else spec.how_to_get
        plugin = "" if name in DATASETS else " (plugin)"
        rows.append({"name": name, "kind": f"data/{spec.kind}{plugin}",
                     "source": where if ok else spec.source,
                     "licence": spec.licence, "available": "yes" if ok else "no",
                     "how to get": "" if ok else how})
    rows.append({"name": "timm:<arch> / hf:<repo>", "kind": "model/hub", "source": "hub (online)",
                 "licence": "per model", "available": "online only", "how to get": "network"})
    rows.append({"name": "imagefolder:<folder> / npz:<file> / hf:<dataset>", "kind": "data/yours",
                 "source": "your files (hf: the hub, online)", "licence": "yours",
                 "available": "by path", "how to get": "see diffred.core.datasources"})
    return pd.DataFrame(rows)
