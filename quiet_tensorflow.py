"""Import TensorFlow without its start-up lines on the user's console.

TensorFlow 2.21 prints, on import, two lines twice: absl's "All log messages before
absl::InitializeLog() is called are written to STDERR" and oneDNN's "oneDNN custom operations
are on ...". No supported switch silences them: they are logged before absl's logging is set
up, when absl ignores every threshold, TF_CPP_MIN_LOG_LEVEL included (abseil/abseil-cpp pull
requests #1718 and #1957, not merged). TF_ENABLE_ONEDNN_OPTS=0 would hide the second by turning
oneDNN off, which changes the numbers and the speed. So, as a last resort, the import alone
runs with file descriptor 2 sent to a temporary file; afterwards every line that is not one of
those two is written to stderr as it came.

The other line users saw, "NodeDef mentions attribute use_unbounded_threadpool" at evaluation,
came from ``model.predict``'s tf.data pipeline under op determinism; scoring goes through
``model.predict_scores`` instead, which builds no pipeline.
"""

from __future__ import annotations

import os
import sys
import tempfile

STARTUP_NOISE = (b"All log messages before absl::InitializeLog() is called",
                 b"oneDNN custom operations are on")


def import_tensorflow() -> None:
    """Import TensorFlow and Keras once, dropping only their known start-up lines."""
    if "tensorflow" in sys.modules:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # later C++ info lines (honoured after start-up)
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import keras  # noqa: F401  (imports TensorFlow; imported for its side effect)
            import tensorflow  # noqa: F401
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        captured.seek(0)
        for line in captured.read().splitlines(keepends=True):
            if not any(noise in line for noise in STARTUP_NOISE):
                os.write(2, line)
