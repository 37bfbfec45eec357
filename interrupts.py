"""The interrupt guard: Ctrl-C (SIGINT) and SIGTERM stop training at a clean point.

The last completed epoch stays saved; a signal during a checkpoint write waits for the write to
complete. A second signal exits at once, which is as safe as a kill: every write is atomic.
"""

from __future__ import annotations

import contextlib
import os
import signal

from errors import Interrupted


class InterruptGuard:
    """SIGINT/SIGTERM handling: stop at the next batch, or right after a checkpoint write.

    The handler only records the signal. Raising from it would land in whatever bytecode runs
    at that instant, and TensorFlow's own code catches and rewraps exceptions there (seen: a
    TypeError from tf.function's argument binding, exit code 1). ``check`` raises
    ``Interrupted`` at a clean point instead: the callback from ``callback()`` calls it after
    every training and validation batch (milliseconds apart), the checkpoint write right after
    it completes, and the training loop once more when fit returns.
    """

    def __init__(self):
        self.pending: int | None = None
        self.saving = False
        self.previous = {}

    def __enter__(self):
        for signum in (signal.SIGINT, signal.SIGTERM):
            self.previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc):
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)
        return False

    def _handle(self, signum, frame):
        if self.pending is not None:
            # Second signal: leave now. Files are written atomically, so this is as safe as a kill.
            os.write(2, b"\nSecond interrupt - exiting immediately.\n")
            os._exit(128 + signum)
        self.pending = signum
        if self.saving:
            os.write(2, b"\nInterrupt received - finishing the checkpoint write first...\n")

    def check(self) -> None:
        if self.pending is not None and not self.saving:
            raise Interrupted(self.pending)

    def callback(self):
        import keras

        guard = self

        class StopOnSignal(keras.callbacks.Callback):
            def on_train_batch_end(self, batch, logs=None):
                guard.check()

            def on_test_batch_end(self, batch, logs=None):
                guard.check()

        return StopOnSignal()

    @contextlib.contextmanager
    def critical(self):
        self.saving = True
        try:
            yield
        finally:
            self.saving = False
        self.check()
