"""Writes a trained run's report: `<model_dir>/report/index.html`, one page with pictures.

    python -m sst2.report --model_dir=runs/sst2

`sst2.train` and `sst2.evaluate` write it too (`--noreport` to skip). What
the page holds: `sst2.serve.report`.
"""

from sst2 import cli
from sst2.run.command_config import ReportConfig


def main(config: ReportConfig, argv: list[str]) -> None:
    from sst2.run.runlock import RunLock
    from sst2.serve.report import write_report
    from sst2.serve.trained import restore

    with RunLock(config.model_dir, create=False):
        trained = restore(config.model_dir, config.checkpoint)
        print(f"Wrote {write_report(trained, config.eval_split)}")


if __name__ == "__main__":
    cli.run(main, ReportConfig)
