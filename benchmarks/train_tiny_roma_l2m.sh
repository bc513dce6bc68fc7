#!/bin/bash
# How densematch/weights_data/tiny_roma_l2m.pth was made (CPU, 2 shared cores). DATA is outside the repository.
# Re-running resumes: synth keeps complete pairs, train continues with --resume (add it by hand).
# The synth run was stopped (Ctrl-C) after 528 pairs = the first 264 images in sorted order, 2 pairs each.
set -e
DATA=${DATA:-/work/tinyl2m_data}
IMAGES=${IMAGES:-../shared/data/single_images/images}
OMP_NUM_THREADS=1 nice -n 5 python -m densematch synth "$IMAGES" --output "$DATA/synth384" \
  --resolution 384 --pairs-per-image 2 --workers 2 --quiet          # --depth popup is the default prior
OMP_NUM_THREADS=2 nice -n 2 python -m densematch train tiny_roma_l2m \
  --data "synthetic:$DATA/synth384" --data "homography:$IMAGES" \
  --resolution 256 --batch-size 4 --lr 3e-4 --steps 360 --workers 1 \
  --log-every 10 --checkpoint-every 40 --no-progress --output "$DATA/run256" "$@"
python benchmarks/ship_tiny_roma_l2m.py "$DATA/run256"               # fp16 copy into the package + sha256
