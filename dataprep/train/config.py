"""The trainer's configuration: one dataclass, every field commented with why it exists.

Field names equal the click parameter names of ``dataprep train`` (so a recipe's keys, the
flags and ``config.json`` agree). The resolved configuration (after defaults and detection:
classes, device, steps per epoch) is saved as ``RUN/config.json`` and inside every checkpoint.
Only stdlib here: the CLI imports this without torch.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from dataprep.errors import UsageError
from dataprep.units import parse_size

OPTIMIZERS = ("sgd", "adam", "adamw", "adagrad", "rmsprop")
SCHEDULES = ("step", "multistep", "cosine", "constant")
AMP_MODES = ("auto", "off", "bf16", "fp16")
DEVICES = ("auto", "cpu", "cuda")
LAZY_VIEWS = ("expand", "one")
IMAGENET_MEAN = (0.485, 0.456, 0.406)  # what ImageNet weights expect
IMAGENET_STD = (0.229, 0.224, 0.225)
DEFAULT_IMG_SIZE = 224
MODEL_IMG_SIZES = {"inception_v3": 299}  # the size a family was designed (and weighed) for


def default_img_size(model: str) -> int:
    """``--img-size`` when none is given: 299 for Inception v3, else 224."""
    return MODEL_IMG_SIZES.get(model, DEFAULT_IMG_SIZE)


@dataclass
class TrainConfig:
    # -- data ------------------------------------------------------------------------------
    data: str  # training shards: directory, brace pattern, http(s):// or pipe: URL, or LMDB
    out: str  # run directory: config.json, metrics.jsonl, curves.png, best.pt, last.pt
    val: str | None = None  # validation shards; default: DATA's val split when it has one
    train_split: str = "train"  # split name in DATA's _info.json / {split}.lmdb
    val_split: str = "val"  # split name in VAL
    num_classes: int | None = None  # default: the class list in dataprep.json / the LMDB
    cache_dir: str | None = None  # where remote shards land; default RUN/shard-cache
    cache_size: int = 4 * 1000**3  # hard bound of the cache, all workers and ranks together
    workers: int = 2  # DataLoader processes per rank (decoding + augmentation)
    shuffle_buffer: int = 1000  # samples mixed per worker on top of the shard shuffle
    lazy_views: str = "expand"  # lazily stored ten-crops: every view a sample, or one per epoch
    steps_per_epoch: int | None = None  # default: one pass, samples // (ranks x batch size)
    # -- pixels ----------------------------------------------------------------------------
    img_size: int = None  # type: ignore[assignment]  # side of the square crop the model
    #                       sees; default default_img_size(model): 299 for inception_v3, else 224
    short_side: int | None = None  # images are resized to this before cropping; default
    #                                round(img_size / 0.875) (256 for 224, the ImageNet habit)
    hflip: bool = True  # random horizontal flips in training
    color_jitter: tuple[float, float, float, float] | None = None  # brightness, contrast,
    #                                saturation, hue strengths (torchvision ColorJitter)
    pca_lighting: float = 0.0  # AlexNet lighting sigma; 0.1 in the paper; 0 disables
    # the rest of `dataprep augment`'s stages, drawn per (seed, key, view, epoch) online:
    scale_jitter: tuple[int, int] | None = None  # shorter side ~ U{LO..HI}, then the crop
    random_resized_crop: bool = False  # torchvision RandomResizedCrop (area 8-100 %) instead
    rotate: float = 0.0  # max degrees
    shift: float = 0.0  # max fraction of the size
    blur: bool = False  # Gaussian blur sigma ~ U(0.1, 2) on half the samples
    noise: float = 0.0  # Gaussian noise sigma (pixels in [0, 1])
    stats: str | None = None  # stats.json of `dataprep stats`: mean/std (unless given) and
    #                           the PCA eigen decomposition
    pca_stats: str | None = None  # older name of --stats for the eigen decomposition only
    mean: tuple[float, float, float] = None  # type: ignore[assignment]  # default: --stats'
    std: tuple[float, float, float] = None  # type: ignore[assignment]  # else ImageNet's
    # -- model -----------------------------------------------------------------------------
    model: str = "resnet18"  # torchvision name, timm name (when installed) or tiny_cnn
    weights: str | None = None  # local state_dict to start from (offline fine-tuning)
    pretrained: bool = False  # torchvision's own weights download (needs internet)
    channels_last: bool = False  # NHWC memory format: faster convolutions on tensor cores
    # -- optimization ----------------------------------------------------------------------
    epochs: int = 10
    batch_size: int = 64  # per rank, per step; the effective batch is x ranks x accum_steps
    optimizer: str = "sgd"
    lr: float = 0.01  # base learning rate of the backbone
    head_lr_mult: float = 1.0  # the new head learns this much faster (10 is common)
    momentum: float = 0.9  # sgd and rmsprop
    weight_decay: float = 1e-4
    schedule: str = "cosine"  # per-step learning-rate shape after warmup
    step_size: int = 30  # step schedule: epochs between decays
    milestones: list[int] = field(default_factory=lambda: [30, 60, 90])  # multistep epochs
    gamma: float = 0.1  # decay factor of step / multistep
    warmup_epochs: float = 0.0  # linear ramp from ~0 to lr, counted in (fractional) epochs
    freeze_epochs: int = 0  # train the head alone for this many epochs, then everything
    reinit_last: int = 0  # re-initialise the last N layers after loading weights
    train_last: int | None = None  # train only the last N layers (the rest stays frozen)
    freeze_until: str | None = None  # freeze every layer registered before this one
    lr_group: list[str] = field(default_factory=list)  # 'PATTERN=MULT', first match wins
    freeze_bn: bool = False  # keep the loaded BatchNorm statistics all run long: small batches or
    #                          a new domain otherwise shift them at the unfreeze
    accum_steps: int = 1  # micro-batches summed per optimizer step (bigger effective batch)
    label_smoothing: float = 0.0
    amp: str = "auto"  # auto: bf16 (or fp16 + scaler) on CUDA, off on CPU
    early_stop: int | None = None  # stop after this many epochs without a better val top-1
    save_every: int | None = None  # also keep epoch-N.pt every N epochs (Caffe's snapshot)
    eval_every_steps: int | None = None  # also validate (and pick best.pt) every N optimizer
    #                                      steps, as Caffe's test_interval
    # -- run -------------------------------------------------------------------------------
    resume: bool = False  # continue RUN/last.pt (model, optimizer, epoch, best, history)
    overwrite: bool = False  # start afresh in a RUN directory that already holds a run
    device: str = "auto"  # auto: cuda when available, else cpu
    seed: int = 0  # shard order, buffers, augmentation and init all derive from it
    progress: bool = True  # tqdm bar (rank 0)
    # -- resolved at start (written to config.json; not flags) ------------------------------
    classes: list[str] = field(default_factory=list)
    resolved: dict[str, Any] = field(default_factory=dict)

    # fields that may change when resuming; the rest must match the checkpoint
    RESUMABLE = frozenset({"epochs", "resume", "overwrite", "workers", "device", "cache_dir",
                           "cache_size", "early_stop", "progress", "data", "val", "resolved",
                           "save_every", "stats", "pca_stats"})

    def __post_init__(self) -> None:
        if isinstance(self.cache_size, str):
            self.cache_size = parse_size(self.cache_size)
        if self.color_jitter is not None:
            self.color_jitter = _jitter(self.color_jitter)
        if self.img_size is None:
            self.img_size = default_img_size(self.model)
        if self.scale_jitter is not None:
            self.scale_jitter = _int_pair(self.scale_jitter, "--scale-jitter")
        self.lr_group = [str(g) for g in self.lr_group]
        self._resolve_normalization()
        self.milestones = [int(m) for m in self.milestones]

    def _resolve_normalization(self) -> None:
        """mean/std: as given, else from ``stats`` (``dataprep stats``), else ImageNet's."""
        if (self.mean is None or self.std is None) and self.stats:
            from dataprep.jobs.stats import load_stats

            loaded = load_stats(self.stats)
            self.mean = self.mean or tuple(loaded["mean"])  # type: ignore[assignment]
            self.std = self.std or tuple(loaded["std"])  # type: ignore[assignment]
        self.mean = tuple(float(v) for v in (self.mean or IMAGENET_MEAN))  # type: ignore
        self.std = tuple(float(v) for v in (self.std or IMAGENET_STD))  # type: ignore

    @property
    def crop_short_side(self) -> int:
        return self.short_side or int(round(self.img_size / 0.875))

    def validate(self) -> None:
        """Raise :class:`UsageError` for values that cannot work, in the flags' own words."""
        _choice("--optimizer", self.optimizer, OPTIMIZERS)
        _choice("--schedule", self.schedule, SCHEDULES)
        _choice("--amp", self.amp, AMP_MODES)
        _choice("--device", self.device, DEVICES)
        _choice("--lazy-views", self.lazy_views, LAZY_VIEWS)
        for flag, value in (("--epochs", self.epochs), ("--batch-size", self.batch_size),
                            ("--img-size", self.img_size), ("--accum-steps", self.accum_steps)):
            if value < 1:
                raise UsageError(f"{flag} must be at least 1, got {value}")
        if self.lr <= 0:
            raise UsageError(f"--lr must be positive, got {self.lr}")
        if self.crop_short_side < self.img_size:
            raise UsageError(f"--short-side {self.short_side} is smaller than --img-size "
                             f"{self.img_size}; every crop would fall outside the image")
        if self.pca_lighting < 0:
            raise UsageError(f"--pca-lighting must be >= 0, got {self.pca_lighting}")
        if self.freeze_epochs < 0 or self.workers < 0:
            raise UsageError("--freeze-epochs and --workers cannot be negative")
        if self.weights and self.pretrained:
            raise UsageError("pass either --weights FILE or --pretrained, not both")
        for flag, n in (("--reinit-last", self.reinit_last), ("--train-last", self.train_last),
                        ("--save-every", self.save_every),
                        ("--eval-every-steps", self.eval_every_steps)):
            if n is not None and n < (0 if flag == "--reinit-last" else 1):
                raise UsageError(f"{flag} must be at least "
                                 f"{0 if flag == '--reinit-last' else 1}, got {n}")
        if self.stats and self.pca_stats and self.stats != self.pca_stats:
            raise UsageError("--stats and --pca-stats name different files; --stats alone "
                             "gives both the normalization and the PCA eigenvectors")
        if self.resume and self.overwrite:
            raise UsageError("--resume continues a run and --overwrite replaces it; pass one")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def differences(self, other: TrainConfig) -> list[str]:
        """Fields (outside :attr:`RESUMABLE`) whose values differ from ``other``."""
        a, b = self.to_dict(), other.to_dict()
        return [k for k in a if k not in self.RESUMABLE and a[k] != b[k]]


def _choice(flag: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise UsageError(f"{flag} {value!r}: expected one of {', '.join(allowed)}")


def _int_pair(value: Any, flag: str) -> tuple[int, int]:
    """``"256,480"`` or a pair -> two ints."""
    if isinstance(value, str):
        value = value.split(",")
    try:
        lo, hi = (int(v) for v in value)
    except (TypeError, ValueError):
        raise UsageError(f"{flag} {value!r}: expected LO,HI, e.g. {flag} 256,480") from None
    return lo, hi


def _jitter(value: Any) -> tuple[float, float, float, float]:
    """``0.4`` -> (0.4, 0.4, 0.4, 0.0); ``"0.4,0.4,0.4,0.1"`` or a sequence -> four floats."""
    if isinstance(value, str):
        value = [float(v) for v in value.split(",")]
    if isinstance(value, (int, float)):
        value = [float(value)] * 3 + [0.0]
    values = [float(v) for v in value]
    if len(values) == 1:
        values = values * 3 + [0.0]
    if len(values) == 3:
        values.append(0.0)
    if len(values) != 4 or any(v < 0 for v in values) or values[3] > 0.5:
        raise UsageError(f"--color-jitter {value!r}: expected one strength, or four "
                         "non-negative values brightness,contrast,saturation,hue (hue <= 0.5)")
    return values[0], values[1], values[2], values[3]
