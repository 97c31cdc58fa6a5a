"""Every model and dataset by short name: where it comes from, its licence, whether it is here
(for a dataset: found where, or the command that fetches it)."""
from __future__ import annotations


def assets_table():
    """A DataFrame: name, kind, source, licence, available, how to get it."""
    import pandas as pd

    from diffred.core.datasets import DATASETS, dataset_available, manifest_files
    from diffred.core.models import MODELS, model_available
    rows = []
    for name, spec in MODELS.items():
        ok = model_available(name)
        rows.append({"name": name, "kind": f"model/{spec.kind}", "source": spec.source,
                     "licence": spec.licence, "available": "yes" if ok else "no",
                     "how to get": "" if ok else spec.how_to_get})
    for name, spec in DATASETS.items():
        ok, where = dataset_available(name)
        how = f"missing — `diffred data fetch {name}`" if manifest_files(name) else spec.how_to_get
        rows.append({"name": name, "kind": f"data/{spec.kind}", "source": where if ok else spec.source,
                     "licence": spec.licence, "available": "yes" if ok else "no",
                     "how to get": "" if ok else how})
    rows.append({"name": "timm:<arch> / hf:<repo>", "kind": "model/hub", "source": "hub (online)",
                 "licence": "per model", "available": "online only", "how to get": "network"})
    return pd.DataFrame(rows)
