#!/bin/bash
# the training command of tiny_roma_l2m (re-run with --resume to continue)
cd /work/wt-tinyl2m
PYTHONPATH=/work/wt-tinyl2m OMP_NUM_THREADS=2 exec nice -n 2 python -m densematch train tiny_roma_l2m \
  --data synthetic:/work/tinyl2m_data/synth384 --data homography:/work/shared/data/single_images/images \
  --resolution 256 --batch-size 4 --lr 3e-4 --steps 360 --workers 1 \
  --log-every 10 --checkpoint-every 40 --no-progress --output /work/tinyl2m_data/run256 "$@"
