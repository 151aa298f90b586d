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
    img_size: int = 224  # side of the square crop the model sees
    short_side: int | None = None  # images are resized to this before cropping; default
    #                                round(img_size / 0.875) (256 for 224, the ImageNet habit)
    hflip: bool = True  # random horizontal flips in training
    color_jitter: tuple[float, float, float, float] | None = None  # brightness, contrast,
    #                                saturation, hue strengths (torchvision ColorJitter)
    pca_lighting: float = 0.0  # AlexNet lighting sigma; 0.1 in the paper; 0 disables
    pca_stats: str | None = None  # stats.json of `dataprep stats` for the eigen decomposition;
    #                               default: the ImageNet constants
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)  # ImageNet: what weights expect
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
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
    freeze_bn: bool = False  # keep the loaded BatchNorm statistics all run long: small batches or
    #                          a new domain otherwise shift them at the unfreeze
    accum_steps: int = 1  # micro-batches summed per optimizer step (bigger effective batch)
    label_smoothing: float = 0.0
    amp: str = "auto"  # auto: bf16 (or fp16 + scaler) on CUDA, off on CPU
    early_stop: int | None = None  # stop after this many epochs without a better val top-1
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
                           "cache_size", "early_stop", "progress", "data", "val", "resolved"})

    def __post_init__(self) -> None:
        if isinstance(self.cache_size, str):
            self.cache_size = parse_size(self.cache_size)
        if self.color_jitter is not None:
            self.color_jitter = _jitter(self.color_jitter)
        self.mean = tuple(float(v) for v in self.mean)  # type: ignore[assignment]
        self.std = tuple(float(v) for v in self.std)  # type: ignore[assignment]
        self.milestones = [int(m) for m in self.milestones]

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
