"""Scores files with an export on Apache Beam: millions of texts, on one machine or a cluster.

    python -m sst2.score --export_dir=runs/sst2 --input='reviews/*.txt' --output=scored/reviews
    python -m sst2.score --export_dir=runs/sst2/export_openvino --input='data/*.csv' \\
        --text_column=review --id_column=review_id --output=scored/reviews
    python -m sst2.score ... --runner=DataflowRunner -- --project=P --region=R \\
        --temp_location=gs://B/tmp --requirements_file=requirements.txt

Writes `<output>-00000-of-0000N.jsonl`: per record its `id` (`--id_column`, or
`<file>:<line>`) and the export's answer, as `sst2.predict --json` gives it, or its
`error` (a row that does not parse, a file with nothing to read). The shards
appear together once the run has succeeded; an earlier run's shards under the
same prefix are refused, or with `--overwrite` replaced. Beam's own options
follow a lone `--`. By default the embedded DirectRunner runs one worker in this
process, the export using every core (`-- --direct_num_workers=4
--direct_running_mode=multi_processing` for worker processes). Needs
`pip install 'sst2[beam]'`.

Exit status: 0 when records were scored (stderr then says how many records and
files could not be read, and which ids were given twice); 2 with one `error:`
line when nothing was written, or when no record could be scored (the output
then holds every record's error).
"""

import contextlib
import logging
import os
import shutil
import signal
import sys
import tempfile

from sst2 import cli
from sst2.run.command_config import ScoreConfig
from sst2.run.errors import UserError
from sst2.serve.client.loading import is_openvino_artifact


def main(config: ScoreConfig, argv: list[str]) -> None:
    logging.getLogger("apache_beam").setLevel(logging.CRITICAL)  # failures: one line, below
    # RunInference's memory probe warns once per bundle where it needs no warning.
    logging.getLogger().addFilter(
        lambda record: "Resource module is not available" not in record.getMessage())
    try:
        import apache_beam  # noqa: F401

        from sst2.serve.client import scoring
        from sst2.serve.client.score_output import ScoreOutput
    except ImportError as e:
        raise UserError(f"sst2.score needs Apache Beam ({e.name} is missing): "
                        "pip install 'sst2[beam]'") from e
    from sst2.serve.client.loading import resolve_export_dir

    unknown = [a for a in argv[1:] if not a.startswith("--")]
    if unknown:
        raise UserError(f"{unknown[0]!r}: sst2.score takes no arguments; Beam's options "
                        "follow a lone --, e.g. -- --direct_num_workers=2.")
    reading = scoring.RecordReading(config.text_column, config.id_column, config.file_format,
                                    config.encoding, config.num_shards, config.batch_size)
    reading.check_encoding()
    export_dir = os.path.abspath(resolve_export_dir(config.export_dir))
    files = scoring.check_inputs(config.input, export_dir, reading)
    with ScoreOutput(config.output, config.overwrite) as output, private_temporary_folder():
        scoring.preload(export_dir)
        print(f"Scoring {len(files)} file(s) with {export_dir} on Beam's {config.runner}.")
        with interrupts_noted() as interrupted:
            try:
                outcome = scoring.run_scoring(pipeline_args(config, argv[1:]), config.input,
                                              output.staging_prefix, export_dir, reading)
            except UserError:
                raise
            except Exception as e:  # a worker's failure, as Beam reports it
                if not interrupted:
                    raise UserError("The scoring pipeline failed: "
                                    f"{failure_reason(e, config.output)}") from e
                interrupted.append(e)  # an interrupt Beam wrapped: said as one, below
            except KeyboardInterrupt:
                interrupted.append(None)
        if interrupted:
            raise UserError(f"Interrupted: {config.output} is as it was before this run; run "
                            "the same command again to score the files.")
        written = output.publish()
    report(outcome, config.output, len(written))


def pipeline_args(config: ScoreConfig, beam_args: list) -> list:
    """Beam's options: the runner, what follows `--`, and for the DirectRunner one worker
    in this process unless said otherwise: the export already computes on every core,
    and each further process pays its own start-up (docs/measurements.md)."""
    args = [f"--runner={config.runner}", "--default_sdk_harness_log_level=ERROR", *beam_args]
    if config.runner == "DirectRunner":
        if not any(a.startswith("--direct_num_workers") for a in beam_args):
            args.append("--direct_num_workers=1")
        if not any(a.startswith("--direct_running_mode") for a in beam_args):
            args.append("--direct_running_mode=in_memory")
    return args


def failure_reason(error: BaseException, output: str) -> str:
    """One line for a failed pipeline: an operating-system error found in the chain of
    causes Beam wraps it in (a full disk, a folder not permitted; writing `output` if it
    names no file), else its last line."""
    cause = error
    while cause is not None:
        if isinstance(cause, OSError) and cause.errno:
            return cli.describe_os_error(OSError(cause.errno, cause.strerror,
                                                 cause.filename or f"writing {output}"))
        cause = cause.__cause__ or cause.__context__
    text = str(error).strip()
    errno_line = next((line for line in text.splitlines() if "[Errno" in line), None)
    return (errno_line or (text.splitlines() or [type(error).__name__])[-1]).strip()[:500]


@contextlib.contextmanager
def interrupts_noted():
    """A list that Ctrl-C or SIGTERM appends to while the block runs (then raising
    KeyboardInterrupt as usual): Beam may wrap the interrupt in an error of its own."""
    interrupted = []

    def note(signum, frame):
        interrupted.append(signum)
        raise KeyboardInterrupt

    previous = {s: signal.signal(s, note) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield interrupted
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


@contextlib.contextmanager
def private_temporary_folder():
    """Beam's and TensorFlow's temporary files in a folder of this run's, removed after:
    nothing is left in $TMPDIR (worker processes inherit it through TMPDIR)."""
    folder = tempfile.mkdtemp(prefix="sst2-score-")
    saved = os.environ.get("TMPDIR"), tempfile.tempdir
    os.environ["TMPDIR"], tempfile.tempdir = folder, folder
    try:
        yield folder
    finally:
        if saved[0] is None:
            del os.environ["TMPDIR"]
        else:
            os.environ["TMPDIR"] = saved[0]
        tempfile.tempdir = saved[1]
        shutil.rmtree(folder, ignore_errors=True)


def report(outcome, output: str, shards: int) -> None:
    """What the run did, on stdout and (what could not be read) stderr; raises UserError
    when no record was scored."""
    print(f"Wrote {output}-*.jsonl ({shards} shard(s)): {outcome.scored} of "
          f"{outcome.records} records scored, from {outcome.files} file(s).")
    if outcome.texts_cut:
        print(f"note: {outcome.texts_cut} text(s) were longer than the OpenVINO artifact "
              "reads and were cut to its sequence length (the SavedModel reads long texts "
              "in windows; docs/serving.md).", file=sys.stderr)
    if outcome.duplicate_ids:
        print(f"warning: {outcome.duplicate_ids} id(s) were given to more than one record "
              f"(e.g. {', '.join(outcome.duplicate_examples)}): each record is in the "
              "output, but an id no longer names one.", file=sys.stderr)
    failed = []
    if outcome.unreadable_records:
        failed.append(f"{outcome.unreadable_records} record(s)")
    if outcome.unreadable_files:
        failed.append(f"{outcome.unreadable_files} whole file(s)")
    if not failed:
        return
    examples = "; ".join(outcome.error_examples)
    if not outcome.scored:
        raise UserError(f"no record was scored: {' and '.join(failed)} could not be read "
                        f"(their error records are in {output}-*.jsonl), e.g. {examples}")
    print(f"warning: {' and '.join(failed)} could not be read; their error records are in "
          f"the output. E.g. {examples}", file=sys.stderr)


if __name__ == "__main__":
    cli.run(main, ScoreConfig, needs_tensorflow=lambda config: not is_openvino_artifact(
        config.export_dir))
