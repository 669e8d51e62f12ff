"""Scoring files at scale: an Apache Beam pipeline that runs an export over every record.

`run_scoring(options, inputs, output_prefix, export_dir, reading)` reads the
files a glob matches (each file whole, by one worker: lines keep their
numbers; `sst2.text.records`), answers their records in batches with
`RunInference` and `ExportHandler` (the export loaded once per worker: a
SavedModel, or an OpenVINO artifact), writes sharded JSONL
(`<prefix>-00000-of-0000N.jsonl`): per record its `id` and the export's
answer (`sst2.predict --json`'s, without the text; `"cut": true` for a text
longer than an OpenVINO artifact reads), or its `error`, and
returns what happened (`Outcome`): records scored and not, files that could
not be read, ids given more than once, texts an artifact cut. No record is
dropped: a record or a file that cannot be read becomes an error record.

Example:
    >>> path = os.path.join(tmp_dir, "lines.txt")
    >>> with open(path, "w") as f:
    ...     _ = f.write("a gripping film\\ndull\\n")
    >>> outcome = run_scoring([], path, os.path.join(tmp_dir, "out"), openvino_dir,
    ...                       RecordReading(num_shards=1))
    >>> outcome.scored, outcome.unreadable_records
    (2, 0)
    >>> [json.loads(line)["id"].rsplit("/", 1)[1] for line in open(
    ...     os.path.join(tmp_dir, "out-00000-of-00001.jsonl"))]
    ['lines.txt:1', 'lines.txt:2']
"""

import dataclasses
import json
import os

import apache_beam as beam
import numpy as np
from apache_beam.io import fileio
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.ml.inference.base import ModelHandler, RunInference
from apache_beam.options.pipeline_options import PipelineOptions

from sst2.run.errors import UserError
from sst2.run.targets import TARGETS
from sst2.serve.client.loading import label_names, load_export
from sst2.serve.versions import read_export_facts
from sst2.text.records import RecordReading, check_head, read_records, record_format

# The pipeline's counters and samples (Beam metrics: counted on every runner).
NAMESPACE = "sst2"
EXAMPLES = 3  # error messages and duplicate ids each worker keeps as examples
# Loaded in this process before the pipeline starts (`preload`): an in-process worker's.
_PRELOADED = {}


@dataclasses.dataclass
class LoadedExport:
    """What a worker holds of an export (Beam keeps a weak reference to it)."""

    answer: object
    target: object
    names: list | None
    separator: str


class ExportHandler(ModelHandler):
    """`RunInference`'s handler for an sst2 export: loads it once per worker (in the
    driver's process: the one `preload` loaded) and answers a batch of records as
    `sst2.predict --json` would (`Target.record`), with their ids; counts the texts an
    OpenVINO artifact cut to its sequence length (`texts_cut`)."""

    def __init__(self, export_dir: str, batch_size: int = 256):
        super().__init__()
        self.export_dir, self.batch_size = export_dir, batch_size

    def load_model(self) -> "LoadedExport":
        if self.export_dir in _PRELOADED:
            return _PRELOADED[self.export_dir]
        answer, _, task = load_export(self.export_dir)
        return LoadedExport(answer, TARGETS[task], *label_names(self.export_dir))

    def run_inference(self, batch, model, inference_args=None):
        columns = list(zip(*[record["texts"] for record in batch]))
        answers = model.answer(*[list(column) for column in columns])
        cut = answers.get("cut", np.zeros(len(batch), bool))
        Metrics.counter(NAMESPACE, "texts_cut").inc(int(cut.sum()))
        return [{"id": record["id"], **model.target.record(answers, i, model.names,
                                                           model.separator),
                 **({"cut": True} if cut[i] else {})}
                for i, record in enumerate(batch)]

    def batch_elements_kwargs(self):
        return {"min_batch_size": self.batch_size, "max_batch_size": self.batch_size}

    def share_model_across_processes(self) -> bool:
        return False


def preload(export_dir: str) -> None:
    """Loads the export in this process, before the pipeline starts: a broken export is
    one error line now, and a worker in this process (the DirectRunner's default) uses it."""
    answer, _, task = load_export(export_dir)
    _PRELOADED[export_dir] = LoadedExport(answer, TARGETS[task], *label_names(export_dir))


def check_inputs(inputs: str, export_dir: str, reading: RecordReading) -> list:
    """The files `inputs` matches, checked before any worker starts: something matches,
    none is a folder, the export is an sst2 export, a pair model is given two text
    columns, and every CSV, TSV or JSONL file has the columns named (`check_head`)."""
    try:
        matched = [m.path for r in FileSystems.match([inputs]) for m in r.metadata_list]
    except (ValueError, beam.io.filesystem.BeamIOError) as e:
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
        raise UserError(f"--input={inputs}: {reason}") from None
    if not matched:
        raise UserError(f"--input={inputs} matches no file.")
    folders = [p for p in matched if os.path.isdir(p)]
    if folders:
        raise UserError(f"--input={inputs}: {folders[0]} is a folder; name the files in it, "
                        f"e.g. --input='{folders[0].rstrip('/')}/*'.")
    facts = read_export_facts(export_dir)
    if facts.get("task") not in TARGETS:
        raise UserError(f"{export_dir} is not an sst2 export (its assets.extra/sst2.json "
                        "names no task). Export it with: python -m sst2.export --model_dir=...")
    pairs = facts.get("inputs") == ["text", "text_pair"]
    formats = {record_format(path, reading) for path in matched}
    if formats - {"text"} and len(reading.columns) != (2 if pairs else 1):
        raise UserError(f"--text_column={reading.text_column}: this model "
                        f"{TARGETS[facts['task']].verb} "
                        + ("sentence pairs: name two columns, e.g. --text_column=a,b."
                           if pairs else "single texts: name one column."))
    for path in matched:
        if record_format(path, reading) != "text":
            with FileSystems.open(path, compression_type="uncompressed") as f:
                check_head(path, f.read(1 << 16), reading)  # a first line fits
    return matched


class ReadFile(beam.DoFn):
    """A matched file's records (`read_records`), counted: files, files that could not be
    read, records, records that could not be read; a few error messages as examples."""

    def __init__(self, reading: RecordReading, pair_verb: str | None):
        self.reading, self.pair_verb = reading, pair_verb

    def setup(self):
        self.examples = 0

    def process(self, readable_file):
        path = readable_file.metadata.path
        Metrics.counter(NAMESPACE, "files").inc()
        for record in read_records(path, readable_file.read(), self.reading, self.pair_verb):
            whole_file = "error" in record and record["id"] == path
            if "error" in record:
                Metrics.counter(NAMESPACE, "unreadable_files" if whole_file
                                else "unreadable_records").inc()
                if self.examples < EXAMPLES:
                    self.examples += 1
                    Metrics.string_set(NAMESPACE, "error_examples").add(
                        record["error"] if whole_file or record["error"].startswith(path)
                        else f"{record['id']}: {record['error']}")
            if not whole_file:
                Metrics.counter(NAMESPACE, "records").inc()
            yield record


class CountDuplicates(beam.DoFn):
    """Counts ids given to more than one record, keeping a few as examples."""

    def setup(self):
        self.examples = 0

    def process(self, id_and_count):
        Metrics.counter(NAMESPACE, "duplicate_ids").inc()
        if self.examples < EXAMPLES:
            self.examples += 1
            Metrics.string_set(NAMESPACE, "duplicate_examples").add(
                f"{id_and_count[0]!r} x{id_and_count[1]}")


def score_pipeline(pipeline, inputs: str, output_prefix: str, export_dir: str,
                   reading: RecordReading) -> None:
    """Adds the scoring to `pipeline` (see the module)."""
    facts = read_export_facts(export_dir)
    pair_verb = (TARGETS[facts["task"]].verb if facts.get("inputs") == ["text", "text_pair"]
                 else None)
    records = (
        pipeline
        | "Match" >> fileio.MatchFiles(inputs)
        | "Open" >> fileio.ReadMatches()
        | "Read" >> beam.ParDo(ReadFile(reading, pair_verb))
        | "Spread" >> beam.Reshuffle())
    _ = (records
         | "Ids" >> beam.Map(lambda record: record["id"])
         | "Count ids" >> beam.combiners.Count.PerElement()
         | "Given twice" >> beam.Filter(lambda id_and_count: id_and_count[1] > 1)
         | "Duplicates" >> beam.ParDo(CountDuplicates()))
    readable, unreadable = records | "Sort out" >> beam.Partition(
        lambda record, _: 0 if "texts" in record else 1, 2)
    answers = readable | "Answer" >> RunInference(
        ExportHandler(export_dir, reading.batch_size))
    _ = ((answers, unreadable)
         | "Together" >> beam.Flatten()
         | "JSON" >> beam.Map(lambda record: json.dumps(record, ensure_ascii=False))
         | "Write" >> beam.io.WriteToText(output_prefix, file_name_suffix=".jsonl",
                                          num_shards=reading.num_shards))


@dataclasses.dataclass
class Outcome:
    """What a scoring run did, from its pipeline's metrics."""

    files: int = 0
    unreadable_files: int = 0
    records: int = 0
    unreadable_records: int = 0
    duplicate_ids: int = 0
    texts_cut: int = 0
    error_examples: tuple = ()
    duplicate_examples: tuple = ()

    @property
    def scored(self) -> int:
        return self.records - self.unreadable_records

    @classmethod
    def of(cls, result) -> "Outcome":
        """The outcome of a finished pipeline (`PipelineResult`)."""
        found = result.metrics().query(MetricsFilter().with_namespace(NAMESPACE))
        values = {}
        for kind in ("counters", "string_sets"):
            for metric in found[kind]:
                value = metric.committed if metric.committed is not None else metric.attempted
                values[metric.key.metric.name] = (tuple(sorted(value))[:EXAMPLES]
                                                  if kind == "string_sets" else value)
        fields = {f.name for f in dataclasses.fields(cls)}
        return cls(**{name: value for name, value in values.items() if name in fields})


def run_scoring(beam_args: list, inputs: str, output_prefix: str, export_dir: str,
                reading: RecordReading) -> Outcome:
    """Runs the scoring pipeline (see the module) with Beam's options `beam_args` and
    returns its `Outcome`."""
    pipeline = beam.Pipeline(options=PipelineOptions(beam_args))
    score_pipeline(pipeline, inputs, output_prefix, export_dir, reading)
    result = pipeline.run()
    result.wait_until_finish()
    return Outcome.of(result)
