"""The ``dataprep`` verbs, with the line each shows in ``dataprep --help`` (click would cut
the docstrings' first sentences). Recipes check their tables against these names, whichever
command group a verb runs under (``dataprep``, or ``python -m dataprep.train``)."""

VERBS = {
    "split": "Stratified, seeded train/val(/test) manifests.",
    "resize": "Resize so the shorter side is --short-side.",
    "tencrop": "Resize, then cut ten (or five) views per image.",
    "shard": "Pack any source into WebDataset or LMDB shards.",
    "run": "Run a whole chain from a TOML recipe.",
    "verify": "Re-read shards: sha256, counts, every image decodes.",
    "stats": "Per-channel mean/std and RGB eigen decomposition.",
    "augment": "Write K seeded augmented copies of every image.",
    "preview": "Contact sheet of originals, views, augmentations.",
    "audit": "Duplicates, leakage, label conflicts, odd images, drift.",
    "train": "Fine-tune a CNN on shards (streams, bounded cache).",
    "evaluate": "Test-time crops, confusion matrix, misclassified.",
    "learning-curve": "Accuracy against training images per class.",
    "predict": "Top-k classes of any images, with a contact sheet.",
    "summary": "Layer output shapes and parameter counts.",
    "sweep": "Train a grid of runs from one TOML, then compare.",
    "compare": "Runs side by side: table, ties, overlaid curves.",
}
