"""Training throughput on one GPU: dataprep shards vs synthetic tensors on the device.

The same model, optimizer step, AMP and memory format in every row; only where the batches
come from differs:

* **synthetic**: uint8 batches made once on the device: the model's own ceiling (no input
  pipeline at all);
* **shards**: the trainer's data path: WebDataset shards (written by ``dataprep resize``)
  read by :class:`dataprep.train.data.ShardStream` in ``--workers`` loader processes (decode,
  random crop, flip), pinned memory, ``non_blocking`` copies, normalization on the device
  (:func:`dataprep.train.pixels.normalize`), then the same step;
* **dataprep train**: the trainer itself (:func:`dataprep.train.loop.train`), one epoch of
  ``--steps`` steps, images/s as its ``metrics.jsonl`` reports it (its own timing: loader
  start-up included, its per-step bookkeeping on the device).

Defaults: ResNet-50, 224 px from a 256 short side, batch 256, AMP bf16 (fp16 with a grad
scaler where bf16 is missing), channels_last, SGD momentum. The first ``--warmup`` steps of
each timed row (cuDNN autotuning, worker start-up) are not timed. GPU utilisation (share of
time a kernel ran) is sampled every 0.1 s in a thread during each timed window, from
``torch.cuda.utilization()`` (NVML) or ``nvidia-smi --query-gpu=utilization.gpu``.

Input images are generated (smooth colour fields plus noise, ``--images`` of them, JPEG) or
``--photos DIR`` (``root/<class>/<image>``); either way resized once into shards.

    python benchmarks/gpu_train.py                      # on a CUDA machine
    python benchmarks/gpu_train.py --amp fp16 --batch-size 128 --workers 12
    python benchmarks/gpu_train.py --smoke              # CPU, tiny: checks that it runs
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from common import cores, print_table  # noqa: E402

NUM_CLASSES = 10


@dataclass
class Row:
    name: str
    images: int = 0
    seconds: float = 0.0
    util: list[float] = field(default_factory=list)
    note: str = ""

    @property
    def rate(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else 0.0


# -- GPU utilisation ----------------------------------------------------------------------------


def utilization_reader():
    """A function returning the GPU's utilisation in percent, or None where nothing can say
    (no CUDA, no NVML, no nvidia-smi)."""
    import torch

    if not torch.cuda.is_available():
        return None
    index = torch.cuda.current_device()
    try:
        torch.cuda.utilization(index)

        return lambda: float(torch.cuda.utilization(index))
    except Exception:  # noqa: BLE001  (no pynvml / NVML: try the command line tool)
        pass
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None

    def query() -> float | None:
        out = subprocess.run([smi, "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits",
                              f"--id={index}"], capture_output=True, text=True, timeout=5)
        try:
            return float(out.stdout.strip().splitlines()[0])
        except (ValueError, IndexError):
            return None

    return query if query() is not None else None


@contextlib.contextmanager
def sampled(read, into: list[float], interval_s: float = 0.1):
    """Call ``read()`` every ``interval_s`` in a thread while the block runs; values -> into."""
    if read is None:
        yield
        return
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(interval_s):
            value = read()
            if value is not None:
                into.append(value)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


# -- inputs -------------------------------------------------------------------------------------


def generate_images(root: Path, count: int, size: tuple[int, int], seed: int = 0) -> Path:
    """``count`` JPEGs in ``NUM_CLASSES`` class folders: a smooth random colour field (a
    decoder and resizer see real-looking data, not flat colour) plus noise."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    w, h = size
    for i in range(count):
        label = i % NUM_CLASSES
        folder = root / f"class{label:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        coarse = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
        field_ = np.asarray(Image.fromarray(coarse).resize((w, h), Image.Resampling.BICUBIC),
                            dtype=np.int16)
        noise = rng.integers(-20, 21, (h, w, 3), dtype=np.int16)
        Image.fromarray(np.clip(field_ + noise, 0, 255).astype(np.uint8)).save(
            folder / f"{i:06d}.jpg", quality=90)
    return root


def make_shards(src: Path, out: Path, short_side: int, jobs: int) -> Path:
    from dataprep.jobs.tencrop import resize

    resize(src, out, short_side=short_side, upscale=True, quality=90, jobs=jobs,
           split="train", overwrite=True, max_count=256)
    return out


# -- the step -----------------------------------------------------------------------------------


class Stepper:
    """Model, optimizer, AMP and memory format as the trainer sets them up; ``step(x, y)``
    takes a uint8 NCHW batch already on the device."""

    def __init__(self, model_name: str, device, amp: str, channels_last: bool) -> None:
        import torch

        from dataprep.train.config import TrainConfig
        from dataprep.train.models import build_model
        from dataprep.train.runtime import resolve_amp

        self.torch = torch
        self.device = device
        self.dtype = resolve_amp(TrainConfig(data="", out="", amp=amp), device)
        self.channels_last = channels_last
        model = build_model(model_name, NUM_CLASSES).model.to(device)
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = model.train()
        self.opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9,
                                   weight_decay=1e-4)
        scaler_on = self.dtype == torch.float16 and device.type == "cuda"
        self.scaler = torch.amp.GradScaler(device.type, enabled=scaler_on)
        self.criterion = torch.nn.CrossEntropyLoss()
        self.mean = torch.tensor((0.485, 0.456, 0.406), device=device).view(1, 3, 1, 1)
        self.std = torch.tensor((0.229, 0.224, 0.225), device=device).view(1, 3, 1, 1)

    def step(self, x, y) -> None:
        from dataprep.train.pixels import normalize

        torch = self.torch
        x = normalize(x, self.mean, self.std, self.channels_last)
        ctx = torch.autocast(self.device.type, dtype=self.dtype) if self.dtype is not None \
            else contextlib.nullcontext()
        with ctx:
            loss = self.criterion(self.model(x), y)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.opt)
        self.scaler.update()
        self.opt.zero_grad(set_to_none=True)

    def sync(self) -> None:
        if self.device.type == "cuda":
            self.torch.cuda.synchronize(self.device)


def timed_steps(stepper: Stepper, batches, warmup: int, steps: int, read, row: Row) -> Row:
    """Run ``warmup`` untimed then ``steps`` timed steps over the ``batches`` iterator."""
    it = iter(batches)
    for _ in range(warmup):
        x, y = next(it)
        stepper.step(x, y)
    stepper.sync()
    with sampled(read, row.util):
        start = time.perf_counter()
        for _ in range(steps):
            x, y = next(it)
            stepper.step(x, y)
            row.images += int(y.shape[0])
        stepper.sync()
        row.seconds = time.perf_counter() - start
    return row


def synthetic_batches(batch: int, size: int, device):
    import torch

    g = torch.Generator(device="cpu").manual_seed(0)
    x = torch.randint(0, 256, (batch, 3, size, size), dtype=torch.uint8, generator=g).to(device)
    y = torch.randint(0, NUM_CLASSES, (batch,), generator=g).to(device)
    while True:
        yield x, y


def shard_batches(shards: Path, batch: int, size: int, short_side: int, workers: int,
                  device, total_steps: int):
    """The trainer's stream: ShardStream -> DataLoader (pinned on CUDA) -> device."""
    from dataprep.train.data import ShardStream, make_loader
    from dataprep.train.pixels import Augment
    from dataprep.train.sources import resolve_source

    source = resolve_source(str(shards), "train")
    stream = ShardStream(source.parts, train=True, batch_size=batch,
                         aug=Augment(img_size=size, short_side=short_side), seed=0,
                         batches=total_steps, shuffle_buffer=1000)
    for x, y in make_loader(stream, workers, pin_memory=device.type == "cuda"):
        yield x.to(device, non_blocking=True), y.to(device, non_blocking=True)


def trainer_row(shards: Path, work: Path, args: argparse.Namespace, device, read) -> Row:
    """One epoch of ``dataprep train`` itself; images/s from its own history."""
    from dataprep.train.config import TrainConfig
    from dataprep.train.loop import train

    row = Row("dataprep train (the trainer, 1 epoch)")
    cfg = TrainConfig(data=str(shards), out=str(work / "run"), model=args.model,
                      img_size=args.img_size, short_side=args.short_side,
                      batch_size=args.batch_size, epochs=1,
                      steps_per_epoch=args.warmup + args.steps, amp=args.amp,
                      channels_last=args.channels_last, workers=args.workers,
                      device=device.type, progress=False, overwrite=True, lr=0.01,
                      num_classes=NUM_CLASSES)
    with sampled(read, row.util):
        history = train(cfg).history
    m = history[-1]
    row.images, row.seconds = int(m["train_samples"]), float(m["train_seconds"])
    row.note = "its own timing: loader start-up and the warmup steps included"
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--smoke", action="store_true",
                    help="CPU, resnet18 at 32 px, batch 8, a few steps: checks the script runs "
                         "(well under a minute); prints the same table")
    ap.add_argument("--model", default=None, help="[resnet50; resnet18 with --smoke]")
    ap.add_argument("--img-size", type=int, default=None, help="crop side [224; 32]")
    ap.add_argument("--short-side", type=int, default=None, help="stored short side [256; 36]")
    ap.add_argument("--batch-size", type=int, default=None, help="[256; 8]")
    ap.add_argument("--steps", type=int, default=None, help="timed steps per row [50; 3]")
    ap.add_argument("--warmup", type=int, default=None, help="untimed steps first [10; 1]")
    ap.add_argument("--workers", type=int, default=None,
                    help="loader processes [cores - 2; 0 with --smoke]")
    ap.add_argument("--amp", choices=("auto", "bf16", "fp16", "off"), default="auto",
                    help="auto: bf16 where the GPU has it, else fp16; off on the CPU")
    ap.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                    help="NHWC memory format [on with CUDA; off on the CPU, where PyTorch's "
                         "channels_last convolutions were ~2x slower here]")
    ap.add_argument("--images", type=int, default=None,
                    help="generated input images [4096; 48]")
    ap.add_argument("--photos", type=Path, default=None,
                    help="use these labelled photos (root/<class>/...) instead")
    ap.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto")
    ap.add_argument("--no-trainer", dest="trainer", action="store_false",
                    help="skip the `dataprep train` row")
    args = ap.parse_args()
    import torch

    smoke = args.smoke
    args.model = args.model or ("resnet18" if smoke else "resnet50")
    args.img_size = args.img_size or (32 if smoke else 224)
    args.short_side = args.short_side or (36 if smoke else 256)
    args.batch_size = args.batch_size or (8 if smoke else 256)
    args.steps = args.steps or (3 if smoke else 50)
    args.warmup = args.warmup if args.warmup is not None else (1 if smoke else 10)
    args.workers = args.workers if args.workers is not None else \
        (0 if smoke else max(1, cores() - 2))
    images = args.images or (48 if smoke else 4096)
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda: no CUDA device is available")
    use_cuda = args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available()
                                         and not smoke)
    device = torch.device("cuda" if use_cuda else "cpu")
    if device.type == "cpu":
        torch.set_num_threads(max(1, min(2, cores())))
    else:
        torch.backends.cudnn.benchmark = True
    if args.channels_last is None:
        args.channels_last = device.type == "cuda"
    read = utilization_reader() if device.type == "cuda" else None

    with tempfile.TemporaryDirectory(prefix="gpu-train-") as tmp:
        work = Path(tmp)
        t0 = time.perf_counter()
        src = args.photos or generate_images(work / "images", images,
                                             (args.short_side * 4 // 3 + 5, args.short_side + 7))
        shards = make_shards(src, work / "shards", args.short_side, max(1, min(cores(), 16)))
        prep_s = time.perf_counter() - t0
        stepper = Stepper(args.model, device, args.amp, args.channels_last)
        rows = [timed_steps(stepper, synthetic_batches(args.batch_size, args.img_size, device),
                            args.warmup, args.steps, read,
                            Row("synthetic uint8 tensors on the device"))]
        rows.append(timed_steps(
            stepper, shard_batches(shards, args.batch_size, args.img_size, args.short_side,
                                   args.workers, device, args.warmup + args.steps),
            args.warmup, args.steps, read,
            Row(f"dataprep shards, ShardStream x {args.workers} workers")))
        if args.trainer:
            rows.append(trainer_row(shards, work, args, device, read))

    amp = str(stepper.dtype).removeprefix("torch.") if stepper.dtype is not None else "off"
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    base = rows[0].rate
    table = []
    for r in rows:
        util = (f"{sum(r.util) / len(r.util):.0f} (max {max(r.util):.0f})" if r.util else
                "n/a (no CUDA)" if device.type != "cuda" else "n/a (no NVML / nvidia-smi)")
        table.append([r.name, r.images, f"{r.seconds:.2f}", f"{r.rate:.1f}",
                      f"{r.rate / base:.2f}" if base else "", util])
    print_table(
        f"Training throughput: {args.model}, {args.img_size} px, batch {args.batch_size}, AMP "
        f"{amp}, {'channels_last' if args.channels_last else 'contiguous'}, {name}"
        + (" (smoke run: not a measurement)" if smoke else ""),
        ["input", "images", "seconds", "images/s", "vs synthetic", "GPU utilisation %"],
        table,
        note=(f"{args.steps} timed steps per row after {args.warmup} untimed; "
              f"{images if not args.photos else 'the'} input images "
              f"({'generated' if not args.photos else args.photos}) resized to a "
              f"{args.short_side} px short side into shards in {prep_s:.1f} s (not timed). "
              "SGD momentum, cross-entropy, one step per batch; normalization on the device. "
              "A shards row well below synthetic means the input pipeline is the bottleneck: "
              "raise --workers or store smaller images. "
              + "; ".join(f"{r.name}: {r.note}" for r in rows if r.note)),
    )


if __name__ == "__main__":
    main()
