"""Checks an export's behaviour beyond accuracy: typos, names, identity terms, negation.

    python -m sst2.behaviour --export_dir=runs/sst2
    python -m sst2.behaviour --export_dir=path/to/export/1700000000 \\
        --texts_file=reviews.csv --output=behaviour.json

Runs sst2's behaviour suite (`sst2/serve/behaviour/`, its tests in
`sst2/resources/behaviour/`) on an export, as clients load it: minimum
functionality (a filled template and the answers that pass), invariance (a
change that must not change the answer) and directional tests (a change that
may move it one way only). The changes apply to a run's validation texts (when
`--export_dir` is, or is in, a run folder) and to `--texts_file`'s; a
sentiment model also gets the suite's own sentences and the sentiment tests
(negation, intensifiers, "used to", whose opinion counts). Prints the failure
rate per capability and test, and writes them, with a few failing examples
each, to `<run folder>/behaviour.json` (or `--output`). `docs/behaviour.md`
says what each test checks and why it is fair to a two-class model.
"""

import os

from sst2 import cli
from sst2.run.command_config import BehaviourConfig
from sst2.run.errors import UserError
from sst2.run.run_folder import RunFolder


def run_folder_of(path: str, export_dir: str) -> str | None:
    """The run folder `path` names or lies in (it holds `config.json` and the export),
    or None for an export outside any run."""
    for folder in (path, os.path.dirname(path), os.path.dirname(os.path.dirname(path))):
        run = RunFolder(folder)
        if os.path.exists(run.config) and os.path.dirname(os.path.abspath(export_dir)) in (
                os.path.abspath(run.export), os.path.abspath(run.export_openvino)):
            return folder
    return None


def file_texts(path: str, text_column: str) -> list:
    """A file's texts: CSV, TSV or JSONL (`text_column`), or text, one per line."""
    from sst2.text.text_files import read_table

    if path.lower().endswith(".txt"):  # bytes that are not UTF-8 as U+FFFD, as predict reads
        with open(path, "rb") as f:
            text = f.read().decode("utf-8", "replace").removeprefix("\ufeff")
        return [line for line in text.splitlines() if line.strip()]
    table = read_table(path, (text_column,), None, require_labels=False)
    return [texts[0] for texts in table.texts]


def print_results(found: dict, output: str) -> None:
    """The failure rate per capability, then per test, as a table a person reads."""
    def rate(value):
        return "  n/a" if value is None else f"{100 * value:5.1f} %"

    print(f"Behaviour of {found['export_dir']} ({found['task']}"
          f"{', sentiment' if found['sentiment'] else ''}):")
    for name, capability in sorted(found["capabilities"].items()):
        print(f"  {name:<12} {rate(capability['failure_rate'])} failed "
              f"({capability['tests']} tests)")
    print(f"  {'mean':<12} {rate(found['mean_failure_rate'])} failed, over every test")
    for test in found["tests"]:
        print(f"    {test['capability']:<12} {test['kind']}  {rate(test['failure_rate'])}  "
              f"{test['failed']:>4}/{test['cases']:<4} {test['name']}")
    print(f"Written to {output}")


def main(config: BehaviourConfig, argv: list[str]) -> None:
    from sst2.run.files import save_json
    from sst2.run.runlock import RunLock
    from sst2.serve.behaviour.export_check import check_export, run_texts
    from sst2.serve.client.loading import resolve_export_dir

    export_dir = resolve_export_dir(config.export_dir)
    run = run_folder_of(config.export_dir, export_dir)
    output = config.output or (RunFolder(run).behaviour if run else None)
    if output is None:
        raise UserError(f"{config.export_dir} is not in a run folder: name where to write "
                        "the results with --output=behaviour.json.")
    if os.path.isdir(output):
        raise UserError(f"--output={output} is a folder; name a file, e.g. "
                        f"{os.path.join(output, 'behaviour.json')}.")
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)  # before the work
    texts = file_texts(config.texts_file, config.text_column) if config.texts_file else []
    if run is None:
        found = check_export(export_dir, texts, config.sentiment, config.seed,
                             config.max_cases, config.batch_size, config.progress)
        save_json(output, found)
    else:  # the run folder's lock: one writer of its files at a time
        with RunLock(run, create=False):
            found = check_export(export_dir, run_texts(run) + texts, config.sentiment,
                                 config.seed, config.max_cases, config.batch_size,
                                 config.progress)
            save_json(output, found)
    print_results(found, output)


if __name__ == "__main__":
    cli.run(main, BehaviourConfig)
