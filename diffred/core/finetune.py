"""Fine-tuning a text encoder on a sentence task, cached by content (Dalvi et al. 2020).

The paper reads the ``[CLS]`` activations of every layer of a model *fine-tuned on the task*
(repo README, "Extracting Activations"), fine-tuned with the transformers defaults of its time
(:data:`PAPER_CONFIG`: AdamW with eps 1e-8, lr 5e-5, 3 epochs, batch 8, max length 128, no
warmup, no weight decay, linear decay to 0 — the authors' copy of transformers'
``examples/run_glue.py``, ``WarmupLinearSchedule``; that script also clips the gradient norm at
1.0, which is not done here).  :func:`finetune` trains
``AutoModelForSequenceClassification`` on top of a registry encoder on a seeded training
subset, or fetches the run from ``ArrayStore('checkpoints')`` — the key holds the base
weights' hash, the subset's fingerprint, the configuration, the seed and this module's code
version — and returns a :class:`FineTuned`: the tuned encoder as a
:class:`~diffred.core.models.Backbone` (whose features :func:`diffred.core.extract.features` caches
under its own name and fingerprint) and the classification head, so the model's own
accuracy is computed from the cached last-layer ``[CLS]`` features (:meth:`FineTuned.accuracy`).
Deterministic by seed: the head's initialisation and dropout draw from ``torch.manual_seed``,
the batch order from ``numpy.random.default_rng(seed)``.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import numpy as np

from diffred.core.cache import ArrayStore, code_version, hash_key
from diffred.core.datasets import Data, load_dataset
from diffred.core.device import default_device
from diffred.core.models import Backbone, load_model

STORE = ArrayStore("checkpoints")


@dataclass(frozen=True)
class FineTuneConfig:
    """Fine-tuning hyper-parameters, fixed a priori (never chosen on reported data)."""
    lr: float = 5e-5
    epochs: int = 3
    batch_size: int = 8
    max_length: int = 128
    weight_decay: float = 0.0


PAPER_CONFIG = FineTuneConfig()


@dataclass
class FineTuned:
    """A fine-tuned encoder: ``backbone`` (hidden states of every layer, eval mode, frozen),
    ``classifier`` (the sequence-classification model whose encoder it is), ``key`` (the
    checkpoint's content address = the backbone's fingerprint), ``meta`` (training time,
    sentences/s, loss per epoch, subset size)."""
    backbone: Backbone
    classifier: object
    key: str
    meta: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.backbone.name

    def logits(self, cls_last) -> np.ndarray:
        """The model's own class scores (N, C) from its last layer's ``[CLS]`` states (N, D)."""
        import torch
        clf = self.classifier
        h = torch.tensor(np.asarray(cls_last, np.float32)).unsqueeze(1)    # (N, 1, D)
        with torch.inference_mode():
            pooler = getattr(clf.base_model, "pooler", None)
            if isinstance(clf.classifier, torch.nn.Linear) and pooler is not None:
                return clf.classifier(pooler(h)).numpy()     # BERT: linear on the pooled [CLS]
            return clf.classifier(h).numpy()                 # RoBERTa/MPNet-style head on h[:, 0]

    def accuracy(self, cls_last, y) -> float:
        """Accuracy of the fine-tuned model itself on features (N, D) with labels (N,)."""
        return float((self.logits(cls_last).argmax(1) == np.asarray(y)).mean())


def finetune(model: str, task: str, n: int | None, *, seed: int = 0,
             config: FineTuneConfig = PAPER_CONFIG, device: str | None = None,
             log=print) -> FineTuned:
    """Fine-tune ``model`` (a registry text encoder) on ``n`` seeded training sentences of
    ``task`` (None: the whole training split), or fetch the run from the cache."""
    data = load_dataset(task, "train", n=n, seed=seed)
    if data.kind not in ("text", "text_pair"):
        raise ValueError(f"fine-tuning needs a sentence task; {task!r} is a {data.kind} task")
    base = load_model(model)
    spec = {"code": code_version(*_CODE), "model": model,
            "weights": base.fingerprint, "data": data.fingerprint, "config": asdict(config),
            "seed": seed, "classes": len(data.classes)}
    key = hash_key(spec)
    hit = STORE.load(key)
    if hit is None:
        t0 = time.time()
        arrays, meta = _train(base, data, config, seed, device or default_device())
        meta["seconds"] = time.time() - t0
        meta["sentences_per_s"] = config.epochs * len(data) / meta["seconds"]
        STORE.save(key, arrays, {**meta, "spec": spec})
        if log:
            log(f"fine-tuned {model} on {task} ({len(data)} sentences, {config.epochs} epochs) "
                f"in {meta['seconds']:.0f}s ({meta['sentences_per_s']:.1f} sentences/s)")
        hit = STORE.load(key)
    arrays, meta = hit
    clf = _classifier(base, len(data.classes), seed)
    import torch
    clf.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in arrays.items()
                         if k != "loss"})
    clf.eval().requires_grad_(False)
    encoder = clf.base_model
    encoder.config.output_hidden_states = True
    backbone = Backbone(f"{model}+ft:{task}", "text", encoder, key, base.feature_dim,
                        tokenizer=base.tokenizer, num_layers=base.num_layers)
    return FineTuned(backbone, clf, key, {**meta, "loss": np.asarray(arrays["loss"]).tolist(),
                                          "n_train": len(data)})


def _classifier(base: Backbone, n_classes: int, seed: int):
    """A sequence classifier on ``base``'s architecture with its encoder weights, head seeded."""
    import copy

    import torch
    from transformers import AutoModelForSequenceClassification
    config = copy.deepcopy(base.module.config)
    config.num_labels, config.output_hidden_states = n_classes, False
    torch.manual_seed(seed)
    clf = AutoModelForSequenceClassification.from_config(config)
    missing, unexpected = clf.base_model.load_state_dict(base.module.state_dict(), strict=False)
    if unexpected or missing:
        raise RuntimeError(f"encoder weights of {base.name} do not fit the classifier: "
                           f"missing {missing[:3]}, unexpected {unexpected[:3]}")
    return clf


def _train(base: Backbone, data: Data, config: FineTuneConfig, seed: int, device: str):
    import torch
    clf = _classifier(base, len(data.classes), seed).to(device).train()
    tok = base.tokenizer
    items = data.items
    pair = data.kind == "text_pair"
    enc = tok([a for a, _ in items], [b for _, b in items], truncation=True,
              max_length=config.max_length) if pair else \
        tok(list(items), truncation=True, max_length=config.max_length)
    features = [{k: enc[k][i] for k in enc} for i in range(len(items))]
    labels = torch.as_tensor(np.asarray(data.labels, np.int64))
    opt = torch.optim.AdamW(clf.parameters(), lr=config.lr, weight_decay=config.weight_decay,
                            eps=1e-8)
    bs = config.batch_size
    steps = config.epochs * ((len(items) + bs - 1) // bs)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: max(0.0, 1 - s / steps))
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)                        # dropout
    losses = []
    with torch.enable_grad():
        for _ in range(config.epochs):
            order, total = rng.permutation(len(items)), 0.0
            for start in range(0, len(items), bs):
                idx = order[start:start + bs]
                batch = tok.pad([features[i] for i in idx], return_tensors="pt")
                out = clf(**{k: v.to(device) for k, v in batch.items()},
                          labels=labels[idx].to(device))
                opt.zero_grad(set_to_none=True)
                out.loss.backward()
                opt.step()
                sched.step()
                total += float(out.loss.detach()) * len(idx)
            losses.append(total / len(items))
    arrays = {k: v.detach().cpu().numpy().copy() for k, v in clf.state_dict().items()}
    arrays["loss"] = np.asarray(losses, np.float64)
    return arrays, {"device": device, "n_train": len(items)}


#: The code a run's cache key follows (:func:`diffred.core.cache.code_version` of the training
#: loop and what it calls), captured at import so that a stubbed ``_train`` keeps the key.
_CODE = (_train,)
