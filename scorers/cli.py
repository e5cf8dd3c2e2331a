"""``python run.py train --program P``: fit, evaluate, version; print the metrics and the
config line that uses the new model."""

from __future__ import annotations

import argparse
import sys

from scorers.training import DEFAULT_OUTCOMES, ESTIMATORS


def _share(text: str) -> float:
    """A share strictly between 0 and 1 (argparse: a bad one is a usage error, exit 2)."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"expected a share between 0 and 1, got {text!r}")
    return value


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="run.py train",
        description="Fits a program's propensity model on its outcomes table and publishes "
        "it, versioned with its metrics and sha256, to the model registry.",
    )
    p.add_argument("--program", required=True)
    p.add_argument("--config-dir", "--config_dir", dest="config_dir", default=None)
    p.add_argument("--outcomes", default=None, help=f"outcomes table (default {DEFAULT_OUTCOMES})")
    p.add_argument("--features", default=None, help="comma-separated (default: the config's)")
    p.add_argument("--model-id", dest="model_id", default=None)
    p.add_argument("--label", default="responded")
    p.add_argument("--estimator", choices=ESTIMATORS, default="logistic")
    p.add_argument("--holdout", type=_share, default=0.2, help="newest share kept for metrics")
    p.add_argument(
        "--force",
        action="store_true",
        help="publish and move latest even if the holdout AUC is below the current model's",
    )
    p.add_argument(
        "--registry", default=None, help="dir or s3:// gs:// (default $CEAP_HOME/models)"
    )
    s3 = p.add_argument_group(
        "s3:// registry",
        "Beam's S3Options; without them boto3 reads the environment (AWS_ENDPOINT_URL, "
        "AWS_ACCESS_KEY_ID ..., AWS_PROFILE).",
    )
    for flag in S3_FLAGS:
        s3.add_argument(f"--{flag}", default=None)
    return p


S3_FLAGS = (
    "s3_endpoint_url", "s3_access_key_id", "s3_secret_access_key", "s3_session_token",
    "s3_region_name",
)  # fmt: skip
"""Beam's own S3Options names, as ``run.py export`` and pipeline runs take them."""


def filesystem_options(args: argparse.Namespace):
    """Beam PipelineOptions carrying the S3 flags given, or None when there are none."""
    given = {flag: getattr(args, flag) for flag in S3_FLAGS if getattr(args, flag)}
    if not given:
        return None
    from apache_beam.options.pipeline_options import PipelineOptions

    return PipelineOptions([], **given)


def main(argv: list[str]) -> int:
    from ceap.errors import EXIT_DEGRADED, CeapError
    from configs.programs import default_config_dir
    from scorers import registry
    from scorers.promotion import NotPromoted, summary
    from scorers.training import train

    args = parser().parse_args(argv)
    options = filesystem_options(args)
    if options is not None:
        registry.use_options(options)
    try:
        meta = train(
            args.program,
            args.config_dir or default_config_dir(),
            args.registry,
            outcomes=args.outcomes,
            features=args.features.split(",") if args.features else None,
            model_id=args.model_id,
            label=args.label,
            estimator=args.estimator,
            holdout=args.holdout,
            force=args.force,
        )
    except NotPromoted as exc:  # it ran; the new model was not good enough to replace latest
        print(f"train {args.program}: {exc}")
        print("\n".join(summary(exc)))
        return EXIT_DEGRADED
    except CeapError as exc:
        print(f"ceap: train {args.program}: {exc}", file=sys.stderr)
        return 1
    m, data = meta["metrics"], meta["training_data"]
    print(
        f"model {meta['model_id']} v{meta['version']} ({meta['estimator']}) for {meta['program']}"
    )
    print(f"  features       {', '.join(meta['features'])}")
    print(f"  trained on     {m['train_rows']:,} rows, holdout {m['holdout_rows']:,} (newest)")
    if data.get("from"):
        print(f"  data range     {data['from']} .. {data['to']}")
    print("\n".join(summary(meta)))
    print(f"  log-loss       {m['log_loss']:.4f} (base rate {m['base_rate']:.3f})")
    print(f"  artifact       {meta['path']}")
    print(f"  sha256         {meta['sha256']}")
    latest = meta["path"].rsplit("/", 2)[0] + "/latest"
    features = ", ".join(meta["features"])
    print(f"  use it:        {{id: {meta['model_id']}, type: sklearn, options: "
          f"{{path: {latest}, features: [{features}]}}}}")  # fmt: skip
    return 0
