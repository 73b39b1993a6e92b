"""Load a model from MLflow in a fresh process and predict: ``python -m retune.staging URI``.

Reads feature rows as Parquet bytes on standard input and prints one JSON line with the
predictions and the latency per 1,000 rows. Used by :func:`retune.validation.staging_check`.
"""

from __future__ import annotations

import io
import json
import sys


def main(argv: list[str] | None = None) -> int:
    """Entry point.

    Args:
        argv: ``[model_uri]``.

    Returns:
        The exit code.
    """
    import mlflow
    import pandas as pd

    from retune.validation import latency_ms_per_1k

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m retune.staging MODEL_URI < sample.parquet", file=sys.stderr)
        return 2
    sample = pd.read_parquet(io.BytesIO(sys.stdin.buffer.read()))
    model = mlflow.pyfunc.load_model(args[0])
    predictions = model.predict(sample)
    latency = latency_ms_per_1k(model, sample)
    values = predictions.tolist() if hasattr(predictions, "tolist") else list(predictions)
    print(json.dumps({"predictions": values, "latency_ms_per_1k": latency, "rows": len(sample)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
