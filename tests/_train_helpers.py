"""Shared by the training-engine tests: a sequence-detection run small enough for a few seconds."""

from __future__ import annotations

#: ``make_config`` overrides: a delay-only readout on 200 training and 100 evaluation samples,
#: 3 epochs of 4 batches.
QUICK = dict(dataset="sequence", model="ff-delays", hidden=[], max_delay=12, gap=10, delay_init=0.0,
             readout="li_max", beta_out=0.5, epochs=3, batch_size=50, lr=1e-2, delay_lr=0.5,
             sigma0=10.0, train_limit=200, eval_limit=100, progress=False, tensorboard=False)
