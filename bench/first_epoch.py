#!/usr/bin/env python3
"""What the first training step costs before it starts: TensorFlow tracing the training step.

``model.build_model`` builds the optimizer's slots with the model. Built lazily instead, in the
first training step, they make TensorFlow trace that step twice (a function whose first trace
creates variables is traced again without them). Each sample is a fresh process that builds the
network (``--network default``: the default run's, 3197 points and two channels; ``tiny``: the
test suite's) and fits it for one epoch of two batches of 32 random curves, then again: the
first fit's time less the second's is the set-up. Variants, alternating: ``built`` (the
trainer's network as ``build_model`` returns it) and ``lazy`` (the same network compiled again
by ``model.compile_model``, a fresh Adam with its slots not built, as before 1.13.2). Medians.

    python3 bench/first_epoch.py                   # 5 repeats of each, both networks: about 4 minutes on 2 cores
    python3 bench/first_epoch.py --repeats 1       # quick
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import numpy as np

from common import ROOT, machine, write_result

NETWORKS = {
    "default": ({}, 3197),
    # The tests' (tests/conftest.py, TINY_CONFIG).
    "tiny": ({"conv_filters": [4, 8], "kernel_size": 5, "pool_size": 4, "lstm_units": 8, "dense_units": 8}, 128),
}
VARIANTS = ("built", "lazy")


def sample(network: str, variant: str) -> None:
    """In this process: print the first fit's set-up in seconds (first fit less the second)."""
    import quiet_tensorflow

    quiet_tensorflow.import_tensorflow()
    import tensorflow as tf

    from model import ModelConfig, build_model, compile_model

    settings, length = NETWORKS[network]
    config = ModelConfig(**settings)
    model = build_model(config, length, channels=2)
    if variant == "lazy":
        compile_model(model, config)  # compiled again: a fresh Adam, its slots not built
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, length, 2)).astype(np.float32)
    y = (rng.random((64, 1)) < 0.5).astype(np.float32)
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(32)
    times = []
    for _ in range(2):
        started = time.perf_counter()
        model.fit(data, epochs=1, verbose=0)
        times.append(time.perf_counter() - started)
    print(json.dumps({"setup_seconds": times[0] - times[1]}))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--sample", nargs=2, metavar=("NETWORK", "VARIANT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.sample:
        sample(*args.sample)
        return

    seconds = {network: {variant: [] for variant in VARIANTS} for network in NETWORKS}
    for _ in range(args.repeats):
        for network in NETWORKS:
            for variant in VARIANTS:
                result = subprocess.run([sys.executable, __file__, "--sample", network, variant], cwd=ROOT,
                                        capture_output=True, text=True)
                if result.returncode != 0:
                    raise SystemExit(f"the {network} network, {variant}, failed: "
                                     f"{result.stderr.strip().splitlines()[-1:]}")
                seconds[network][variant].append(json.loads(result.stdout.strip().splitlines()[-1])["setup_seconds"])
    medians = {network: {variant: float(np.median(values)) for variant, values in times.items()}
               for network, times in seconds.items()}
    result = {"repeats": args.repeats, "setup_seconds": seconds, "median_setup_seconds": medians,
              "ratio_built_to_lazy": {network: m["built"] / m["lazy"] for network, m in medians.items()},
              "machine": machine()}
    print(f"{'network':10}{'built (s)':>12}{'lazy (s)':>12}{'ratio':>8}")
    for network, m in medians.items():
        print(f"{network:10}{m['built']:12.2f}{m['lazy']:12.2f}{m['built'] / m['lazy']:8.2f}")
    print(f"medians of {args.repeats}, each a fresh process; {result['machine']}")
    print(f"written to {write_result('first_epoch', result)}")


if __name__ == "__main__":
    main()
