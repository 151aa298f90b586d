#!/usr/bin/env bash
# The demo behind `make demo`: split the bundled photos 80/20, ten-crop the train split at
# 256/224 into WebDataset shards, resize the val split to 256 beside them, read the result
# back, and draw a contact sheet of what the ten views are.
set -euo pipefail
DATAPREP=${1:-dataprep}
PY=$(dirname "$DATAPREP")/python
OUT=${OUT:-out/demo}

echo "== dataprep split examples/photos -o $OUT/splits --ratio 0.8"
"$DATAPREP" split examples/photos -o "$OUT/splits" --ratio 0.8 --overwrite
echo
echo "== dataprep tencrop $OUT/splits/train.jsonl -o $OUT/shards --short-side 256 --crop 224 --format webdataset"
"$DATAPREP" tencrop "$OUT/splits/train.jsonl" -o "$OUT/shards" --short-side 256 --crop 224 \
    --format webdataset --overwrite
echo
echo "== dataprep resize $OUT/splits/val.jsonl -o $OUT/shards --short-side 256 --format webdataset"
"$DATAPREP" resize "$OUT/splits/val.jsonl" -o "$OUT/shards" --short-side 256 --format webdataset \
    --overwrite
echo
echo "== the output"
ls -l "$OUT/shards"
"$PY" - "$OUT/shards" <<'PY'
import json, sys
import webdataset as wds

out = sys.argv[1]
info = json.load(open(f"{out}/_info.json"))
for name, split in info["splits"].items():
    print(f"{name}: {split['num_samples']} samples in {split['filenames']}")
first = next(iter(wds.WebDataset(f"{out}/train-000000.tar", shardshuffle=False)))
meta = json.loads(first["json"])
print(f"first train sample, read with the stock webdataset reader: key={first['__key__']} "
      f"class={meta['class_name']} view={meta['view_name']} jpg={len(first['jpg'])} bytes")
PY
echo
echo "== dataprep preview $OUT/splits/train.jsonl -o $OUT/preview.png --count 3 --copies 0"
"$DATAPREP" preview "$OUT/splits/train.jsonl" -o "$OUT/preview.png" --count 3 --copies 0
echo
echo "Shards are in $OUT/shards (manifests in $OUT/splits); $OUT/preview.png shows three"
echo "train images with their ten views."
