"""Scoring files at scale: an Apache Beam pipeline that runs an export over every record.

`score_pipeline(pipeline, inputs, output_prefix, export_dir, reading)` reads the
files a glob matches (each file whole, by one worker: lines keep their
numbers), gives each record an id, answers them in batches with
`RunInference` and `ExportHandler` (the export loaded once per worker: a
SavedModel, or an OpenVINO artifact), and writes sharded JSONL
(`<prefix>-00000-of-0000N.jsonl`): per record its `id` and the export's
answer (`sst2.predict --json`'s, without the text), or its `error`. No record
is dropped: a record or a file that cannot be read becomes an error record.

Inputs, by extension (or `RecordReading.file_format`): CSV, TSV and JSONL
read by column (`text_column`, a second one for pairs, an optional
`id_column`); any other file is plain text, a record per line (a pair: its
two texts separated by a tab), its id `<file>:<line>`.

Example:
    >>> import apache_beam as beam
    >>> path = os.path.join(tmp_dir, "lines.txt")
    >>> with open(path, "w") as f:
    ...     _ = f.write("a gripping film\\ndull\\n")
    >>> with beam.Pipeline() as p:
    ...     _ = score_pipeline(p, path, os.path.join(tmp_dir, "out"), openvino_dir,
    ...                        RecordReading(num_shards=1))
    >>> [json.loads(line)["id"].rsplit("/", 1)[1] for line in open(
    ...     os.path.join(tmp_dir, "out-00000-of-00001.jsonl"))]
    ['lines.txt:1', 'lines.txt:2']
"""

import dataclasses
import json
import os
from typing import Iterator

import apache_beam as beam
from apache_beam.io import fileio
from apache_beam.io.filesystems import FileSystems
from apache_beam.ml.inference.base import ModelHandler, RunInference

from sst2.run.errors import UserError
from sst2.run.files import remove_entry
from sst2.run.targets import TARGETS
from sst2.serve.loading import NO_TAB, label_names, load_export
from sst2.serve.versions import read_export_facts
from sst2.text import text_files


@dataclasses.dataclass(frozen=True)
class RecordReading:
    """How input files are read into records (see the module)."""

    text_column: str = "text"  # "a,b" for pairs
    id_column: str | None = None
    file_format: str = "auto"  # csv, tsv, jsonl, text
    encoding: str = "utf-8"
    num_shards: int = 0  # 0: the runner's choice
    batch_size: int = 256

    @property
    def columns(self) -> tuple:
        return tuple(c.strip() for c in self.text_column.split(","))


def record_format(path: str, reading: RecordReading) -> str:
    """`csv`, `tsv`, `jsonl`, or `text` (a record per line) for a file."""
    if reading.file_format != "auto":
        return reading.file_format
    return text_files.FORMATS.get(os.path.splitext(path)[1].lower(), "text")


def read_records(path: str, data: bytes, reading: RecordReading,
                 pair_verb: str | None = None) -> Iterator[dict]:
    """One file's records (`pair_verb`: a model of pairs, what it does to them):
    `{"id", "texts"}` (one text, or two for a pair), or
    `{"id", "error"}` for a record (or, if it is empty or cannot be parsed, the whole
    file) that cannot be read."""
    fmt = record_format(path, reading)
    if not data.strip():
        yield {"id": path, "error": "the file is empty"}
        return
    if fmt == "text":
        for number, line in enumerate(data.split(b"\n"), start=1):
            line = line.removesuffix(b"\r")
            if not line and number == data.count(b"\n") + 1:
                break  # the end of the last line
            text = line.decode(reading.encoding, errors="replace")
            parts = text.split("\t", 1) if pair_verb else [text]
            if len(parts) != (2 if pair_verb else 1):
                yield {"id": f"{path}:{number}", "error": NO_TAB.format(verb=pair_verb)}
            else:
                yield {"id": f"{path}:{number}", "texts": parts}
        return
    columns = reading.columns + ((reading.id_column,) if reading.id_column else ())
    try:
        table = text_files.read_columns(path, data, columns, reading.encoding, fmt)
    except UserError as e:
        yield {"id": path, "error": str(e)}
        return
    width = len(reading.columns)
    for number, values in table:
        record_id = values[width] if reading.id_column else f"{path}:{number}"
        yield {"id": record_id, "texts": list(values[:width])}


@dataclasses.dataclass
class LoadedExport:
    """What a worker holds of an export (Beam keeps a weak reference to it)."""

    answer: object
    target: object
    names: list | None
    separator: str


class ExportHandler(ModelHandler):
    """`RunInference`'s handler for an sst2 export: loads it once per worker and answers
    a batch of records as `sst2.predict --json` would (`Target.record`), with their ids."""

    def __init__(self, export_dir: str, batch_size: int = 256):
        super().__init__()
        self.export_dir, self.batch_size = export_dir, batch_size

    def load_model(self) -> "LoadedExport":
        answer, _, task = load_export(self.export_dir)
        return LoadedExport(answer, TARGETS[task], *label_names(self.export_dir))

    def run_inference(self, batch, model, inference_args=None):
        columns = list(zip(*[record["texts"] for record in batch]))
        answers = model.answer(*[list(column) for column in columns])
        return [{"id": record["id"], **model.target.record(answers, i, model.names,
                                                           model.separator)}
                for i, record in enumerate(batch)]

    def batch_elements_kwargs(self):
        return {"min_batch_size": self.batch_size, "max_batch_size": self.batch_size}

    def share_model_across_processes(self) -> bool:
        return False


def check_inputs(inputs: str, export_dir: str, reading: RecordReading) -> list:
    """The files `inputs` matches, checked before any worker starts: something matches,
    the export is an sst2 export, and a pair model is given two text columns."""
    matched = [m.path for r in FileSystems.match([inputs]) for m in r.metadata_list]
    if not matched:
        raise UserError(f"--input={inputs} matches no file.")
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
    return matched


def score_pipeline(pipeline, inputs: str, output_prefix: str, export_dir: str,
                   reading: RecordReading):
    """Adds the scoring to `pipeline` (see the module); returns the written files' names."""
    facts = read_export_facts(export_dir)
    pair_verb = (TARGETS[facts["task"]].verb if facts.get("inputs") == ["text", "text_pair"]
                 else None)
    records = (
        pipeline
        | "Match" >> fileio.MatchFiles(inputs)
        | "Open" >> fileio.ReadMatches()
        | "Read" >> beam.FlatMap(lambda f: read_records(f.metadata.path, f.read(), reading,
                                                        pair_verb))
        | "Spread" >> beam.Reshuffle())
    readable, unreadable = records | "Sort out" >> beam.Partition(
        lambda record, _: 0 if "texts" in record else 1, 2)
    answers = readable | "Answer" >> RunInference(
        ExportHandler(export_dir, reading.batch_size))
    return ((answers, unreadable)
            | "Together" >> beam.Flatten()
            | "JSON" >> beam.Map(lambda record: json.dumps(record, ensure_ascii=False))
            | "Write" >> beam.io.WriteToText(output_prefix, file_name_suffix=".jsonl",
                                             num_shards=reading.num_shards))


def remove_temporary(output_prefix: str) -> None:
    """Removes what a failed pipeline's writer left beside the outputs (Beam's
    `beam-temp-<name>-*` folders), local outputs only."""
    folder, name = os.path.split(os.path.abspath(output_prefix))
    if os.path.isdir(folder):
        for entry in os.listdir(folder):
            if entry.startswith(f"beam-temp-{name}-"):
                remove_entry(os.path.join(folder, entry))
