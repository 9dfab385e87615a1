#!/usr/bin/env bash
# The GPU path, checked on the lent H200 machine (no TensorFlow there: Keras 3 on JAX).
#
# Here, once:  .venv/bin/python bench/gpu_pack.py --data ../shared/data/kidney-ct
# Then, through the device tool: run(command="bash bench/gpu_check.sh", carry=[".gpu"],
#                                    timeout_s=580)
# In under 8 minutes there: the raw model's images/s at 224 px in float32 and mixed float16,
# occlusion maps through JAX, the shipped recipe (two classes, 15 epochs, mixed bfloat16, which the
# H200 runs natively and which needs no loss scaling) trained at 224 px on the packed
# development images, its held-out report, the held-out scores in float32 against float16,
# and, with the time left, the four-class base with scanner augmentation. Everything lands in $OUT; the numbers go to
# docs/benchmarks.md ("The GPU path").
set -uo pipefail
OUT=${OUT:-/tmp/gpu-check}
mkdir -p "$OUT"
DATA=.gpu/kidney-ct
GAP=${GAP:-35}  # the shipped recipe's 100-slice validation gap, in every third slice

python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .gpu/wheels/*.whl || exit 1
export PYTHONPATH=/tmp/site KERAS_BACKEND=jax
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv >"$OUT/gpu.txt" 2>&1

step() {  # step NAME SECONDS COMMAND...: a bounded step, its log in $OUT/NAME.log
    local name=$1 seconds=$2
    shift 2
    # GPU_STEPS=a,b runs only those steps (default: all).
    [ -z "${GPU_STEPS:-}" ] || [[ ",$GPU_STEPS," == *",$name,"* ]] || return 0
    local started=$SECONDS
    timeout "$seconds" "$@" >"$OUT/$name.log" 2>&1
    echo "$name: exit $? after $((SECONDS - started)) s" | tee -a "$OUT/steps.txt"
}

step raw 60 python3 -c '
from bench.inference import raw_images_per_second
import jax, keras
print("backend", keras.backend.backend(), jax.devices())
for precision in ("float32", "float16"):
    raw_images_per_second(224, 2, precision)  # compile first
    print(precision, "224 px, batch 16:", round(raw_images_per_second(224, 40, precision), 1), "images/s")
'
step evidence 60 python3 -c '
import numpy as np, time
from ml_core.classifier import build_classifier
from ml_core.evidence import Occlusion
model = build_classifier(["normal", "stone"], 128, "none")
explain = Occlusion(model, ["normal", "stone"], max_batch_size=256)
batch = np.random.default_rng(0).uniform(-1, 1, (4, 128, 128, 3)).astype("float32")
explain(batch[:1])
started = time.perf_counter()
probabilities, maps = explain(batch)
print("Occlusion on JAX:", probabilities.shape, maps.shape,
      round(4 / (time.perf_counter() - started), 2), "slices/s")
'
step shipped-recipe 180 python3 bench/base_model.py --data "$DATA" --classes normal,stone \
    --validation-gap $GAP --epochs 15 --precision bfloat16 --input-size 224 --out "$OUT/shipped"
step precision 60 python3 bench/precision.py --data "$DATA" --model "$OUT/shipped" \
    --precisions float16,bfloat16
step study-rule 60 python3 bench/study_rule.py --data "$DATA" --model "$OUT/shipped" \
    --validation-gap $GAP
step base-4class 100 python3 bench/base_model.py --data "$DATA" \
    --classes normal,stone,cyst,tumor --augmentation scanner --validation-gap $GAP \
    --epochs 15 --precision bfloat16 --input-size 224 --out "$OUT/base-4class"
# The two-class base at 128 px (train's default size) on every packed normal and stone slice,
# with its study rule; its weights come back in parts under the 16 MiB a file may have
# (`cat base-128/weights.npz.part* > weights.npz` joins them).
step base-128 240 python3 bench/base_model.py --data "$DATA" --classes normal,stone \
    --validation-gap $GAP --epochs 15 --precision bfloat16 --input-size 128 --out "$OUT/base-128"
step study-rule-128 60 python3 bench/study_rule.py --data "$DATA" --model "$OUT/base-128" \
    --validation-gap $GAP
if [ -f "$OUT/base-128/weights.npz" ]; then
    split -b 15m "$OUT/base-128/weights.npz" "$OUT/base-128/weights.npz.part"
    rm "$OUT/base-128/weights.npz" "$OUT/base-128/predictions.json"
fi
rm -f "$OUT"/*/weights.npz  # 27 MB each; the reports are what comes back
tail -n 1 "$OUT"/*.log
