"""The numbers chapter 1 takes from Nanda et al. (literature constants, not measured here).

Every entry names its source: a table / abstract of one of the paper's two versions, or a file
of the official code (``nvedant07/diffused-redundancy`` @ ae5569f, its submodule
``nvedant07/deep-learning-base`` @ 3c0e3dd).  What could not be sourced is not here — the
book used to carry ResNet-50 CIFAR-10/100 accuracies, ViT-S/16 accuracies and a CKA curve
that no reachable table gives, and they were dropped.

:data:`PAPER_DR90` — the δ = 0.9 table of the ICLR 2023 submission (the rows that could be
read); :data:`CLAIMS` — the abstract's headline bound; :data:`PROTOCOL` — the official code's
protocol constants the book follows.
"""
from __future__ import annotations

import pandas as pd

NEURIPS = "Nanda et al., NeurIPS 2023, 'Diffused Redundancy in Pre-trained Representations'"
ICLR = ("Nanda et al., ICLR 2023 submission 'Learned neural network representations are spread "
        "diffusely with redundancy' (OpenReview G2GpzH1l9AC)")
ICLR_TABLE = f"{ICLR}, δ = 0.9 table printed after the abstract (table number not visible)"
REPO = "nvedant07/diffused-redundancy@ae5569f"
BASE = "nvedant07/deep-learning-base@3c0e3dd"

#: dataset names of the paper -> this book's dataset names (None: not shipped offline)
PAPER_DATASETS = {"CIFAR10": "cifar10", "CIFAR100": None, "Flowers": None,
                  "Oxford-IIIT-Pets": None}

#: ICLR 2023 submission, δ = 0.9 table: (model, feature length, ImageNet-1k top-1, DR(0.9) on
#: CIFAR10, CIFAR100, Flowers, Oxford-IIIT-Pets).  Rows from ResNet-50 on are cut off in the
#: reachable text and are not used.
_DR90_ROWS = [
    ("ViT S-16", "timm:vit_small_patch16_224", 384, 0.6482, (0.70, 0.50, 0.50, 0.80)),
    ("ViT S-32", "timm:vit_small_patch32_224", 384, 0.5573, (0.70, 0.50, 0.50, 0.70)),
    ("ResNet18", "timm:resnet18", 512, 0.6923, (0.80, 0.50, 0.50, 0.90)),
]


def _dr90_table() -> pd.DataFrame:
    rows = []
    for model, timm_name, dim, top1, drs in _DR90_ROWS:
        for paper_ds, dr in zip(PAPER_DATASETS, drs):
            rows.append({"paper_model": model, "timm_name": timm_name, "dim": dim,
                         "imagenet_top1": top1, "paper_dataset": paper_ds,
                         "dataset": PAPER_DATASETS[paper_ds], "delta": 0.9, "DR": dr,
                         "source": ICLR_TABLE})
    return pd.DataFrame(rows)


PAPER_DR90: pd.DataFrame = _dr90_table()

#: the headline claims, as bounds
CLAIMS = pd.DataFrame([
    {"claim": "gap_at_20pct", "paper_model": "ResNet-50 (ImageNet-1k), penultimate layer",
     "dataset": "cifar10", "fraction": 0.2, "bound": 0.05,
     "text": "a linear probe on 20% of randomly picked neurons is within 5% of the full layer",
     "source": f"{NEURIPS}, Abstract; same claim in {ICLR}, Abstract"},
])

#: protocol constants of the official code that the book follows (value, source)
PROTOCOL = {
    "fractions": ((0.0005, 0.001, 0.002, 0.003, 0.004, 0.005, 0.01, 0.05, 0.1, 0.2, 0.3, 0.5,
                   0.8, 0.9, 1.0),
                  f"{REPO}:scripts/finetuning_imagenet-resnet50nonrob-cifar10.sh (--fraction)"),
    "seeds": (5, f"{REPO}:scripts/finetuning_imagenet-resnet50nonrob-cifar10.sh "
                 "('for seed in {1..5}')"),
    "subset_rule": ("randperm(d)[:int(fraction * d)]",
                    f"{BASE}:training/finetuning.py:44-56"),
    "pca_projection": ("x @ V[:, :k] (raw features; V from pca_lowrank(center=True))",
                       f"{BASE}:training/partial_inference_layer.py:50-57; "
                       f"{REPO}:calculate_pca.py:47-51"),
    "randproj": ("normalize(rand(d, d), dim=0)[:, :k]", f"{BASE}:training/finetuning.py:66-72"),
    "middle_layers_flatten": ("nn.Flatten(1) of the C x H x W map",
                              f"{REPO}:finetuning_on_middle_layers.py:113-123"),
}


def constants_table() -> pd.DataFrame:
    """Every paper constant used by the book, one row each: kind, name, value, source."""
    rows = [("DR(0.9)", f"{r.paper_model} / {r.paper_dataset}", r.DR, r.source)
            for r in PAPER_DR90.itertuples()]
    rows += [("claim", f"{c.claim} ({c.paper_model}, {c.dataset})", c.bound, c.source)
             for c in CLAIMS.itertuples()]
    rows += [("protocol", name, str(value), source) for name, (value, source) in PROTOCOL.items()]
    rows += [("model", name, name, source) for name, source in PAPER_MODELS.items()]
    return pd.DataFrame(rows, columns=["kind", "name", "value", "source"])


#: the paper's backbones by timm name, for online / GPU runs (``-p paper_models True``):
#: name -> source of the choice
PAPER_MODELS = {
    "timm:resnet18": "NeurIPS 2023, appendix (weights list): 'ResNet18 ... taken from timm v0.6.1'",
    "timm:resnet50": (f"{REPO}:scripts/finetuning_imagenet-resnet50nonrob-allds-morefracs.sh "
                      "(--pretrained True, timm ImageNet weights)"),
    "timm:vit_small_patch16_224.augreg_in1k": (
        f"{REPO}:scripts/finetuning_imagenet-vit-s16-nonrob-allds.sh:9 (checkpoint "
        "S_16-i1k-300ep-..., the AugReg ImageNet-1k ViT-S/16)"),
    "timm:vit_small_patch16_224.augreg_in21k": (
        f"{NEURIPS}, Abstract ('pretrained on both ImageNet1k and ImageNet21k'); AugReg "
        "ImageNet-21k ViT-S/16 by timm name (the checkpoint file is an inference)"),
}
