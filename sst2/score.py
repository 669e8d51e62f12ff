"""Scores files with an export on Apache Beam: millions of texts, on one machine or a cluster.

    python -m sst2.score --export_dir=runs/sst2 --input='reviews/*.txt' --output=scored/reviews
    python -m sst2.score --export_dir=runs/sst2/export_openvino --input='data/*.csv' \\
        --text_column=review --id_column=review_id --output=scored/reviews
    python -m sst2.score ... --runner=DataflowRunner -- --project=P --region=R \\
        --temp_location=gs://B/tmp --requirements_file=requirements.txt

Writes `<output>-00000-of-0000N.jsonl`: per record its `id` (`--id_column`, or
`<file>:<line>`) and the export's answer, as `sst2.predict --json` gives it, or its
`error`. Beam's own options follow a lone `--`. By default the embedded
DirectRunner runs one worker in this process, the export using every core
(`-- --direct_num_workers=4 --direct_running_mode=multi_processing` for worker
processes). Needs `pip install 'sst2[beam]'`.
"""

import logging
import os

from sst2 import cli
from sst2.run.config import ScoreConfig
from sst2.run.errors import UserError


def pipeline_options(config: ScoreConfig, beam_args: list):
    """Beam's options: the runner, what follows `--`, and for the DirectRunner one worker
    in this process unless said otherwise: the export already computes on every core,
    and each further process pays its own start-up (docs/measurements.md)."""
    from apache_beam.options.pipeline_options import PipelineOptions

    args = [f"--runner={config.runner}", "--default_sdk_harness_log_level=ERROR", *beam_args]
    if config.runner == "DirectRunner":
        if not any(a.startswith("--direct_num_workers") for a in beam_args):
            args.append("--direct_num_workers=1")
        if not any(a.startswith("--direct_running_mode") for a in beam_args):
            args.append("--direct_running_mode=in_memory")
    return PipelineOptions(args)


def main(config: ScoreConfig, argv: list[str]) -> None:
    logging.getLogger("apache_beam").setLevel(logging.WARNING)
    # RunInference's memory probe warns once per bundle where it needs no warning.
    logging.getLogger().addFilter(
        lambda record: "Resource module is not available" not in record.getMessage())
    try:
        import apache_beam as beam

        from sst2.serve import scoring
    except ImportError as e:
        raise UserError(f"sst2.score needs Apache Beam ({e.name} is missing): "
                        "pip install 'sst2[beam]'") from e
    from sst2.serve.loading import resolve_export_dir

    unknown = [a for a in argv[1:] if not a.startswith("--")]
    if unknown:
        raise UserError(f"{unknown[0]!r}: sst2.score takes no arguments; Beam's options "
                        "follow a lone --, e.g. -- --direct_num_workers=2.")
    export_dir = os.path.abspath(resolve_export_dir(config.export_dir))
    reading = scoring.RecordReading(config.text_column, config.id_column, config.file_format,
                                    config.encoding, config.num_shards, config.batch_size)
    files = scoring.check_inputs(config.input, export_dir, reading)
    print(f"Scoring {len(files)} file(s) with {export_dir} on Beam's {config.runner}.")
    try:
        with beam.Pipeline(options=pipeline_options(config, argv[1:])) as pipeline:
            scoring.score_pipeline(pipeline, config.input, config.output, export_dir,
                                   reading)
    except (UserError, KeyboardInterrupt):
        scoring.remove_temporary(config.output)
        raise
    except Exception as e:  # a worker's failure, as Beam reports it
        scoring.remove_temporary(config.output)
        reason = (str(e).strip().splitlines() or [type(e).__name__])[-1][:500]
        raise UserError(f"The scoring pipeline failed: {reason}") from e
    print(f"Wrote {config.output}-*.jsonl")


if __name__ == "__main__":
    cli.run(main, ScoreConfig)
