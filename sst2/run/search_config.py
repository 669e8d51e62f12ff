"""`sst2.search`'s options: a training run's, some of them lists to search over.

The searchable options take comma-separated values on the command line
(`--learning_rate=1e-3,3e-3 --dropout=0.1,0.3`); every combination is one
configuration; a flag given one value searches that value only. With no
searchable flag given, `DEFAULT_SPACE` is searched. A
JSON file (`--space_file`) may give the lists instead:
`{"learning_rate": [0.001, 0.003], "head_hidden": [256, 512]}`.

Example:
    >>> space = parse_space({"learning_rate": "1e-3,3e-3", "dropout": "0.1"})
    >>> space
    {'learning_rate': [0.001, 0.003], 'dropout': [0.1]}
    >>> [c["learning_rate"] for c in combinations(space)]
    [0.001, 0.003]
    >>> len(combinations(DEFAULT_SPACE))
    16
"""

import dataclasses
import itertools
import json

from sst2.run.config import DataConfig, ModelConfig, OptimizationConfig, RunConfig, TrainConfig
from sst2.run.errors import UserError
from sst2.run.options import Options, option, options

# The options a search varies; heads that differ only in these (and share pooling and
# layers) train together in one compiled step.
SEARCHABLE = ("learning_rate", "dropout", "head_hidden", "pooling", "layers", "seed")
# Searched when no option is given as a list: 16 configurations of one shape, one stack
# (chosen by measurement over SST-2, SST-5 and TREC, docs/measurements.md: as good as
# adding widths, and faster).
DEFAULT_SPACE = {"learning_rate": [5e-4, 1e-3, 2e-3, 4e-3], "dropout": [0.1, 0.2],
                 "seed": [0, 1]}
_ARTICLE = {int: "an"}
_KINDS = {field.name: kind for group in (ModelConfig, OptimizationConfig)
          for field, _, kind in options(group)}


@dataclasses.dataclass(frozen=True)
class SearchOptions(Options):
    """How a search chooses and what it exports."""

    space_file: str | None = option(
        None, "A JSON file of the lists to search, e.g. {\"learning_rate\": [0.001, 0.003]} "
        "(instead of comma-separated flags).")
    ensemble: int = option(
        1, "Export the mean of the top K heads' answers (of the best group, at its best "
        "epoch) in one SavedModel; 1: the best head alone.", minimum=1)


@dataclasses.dataclass(frozen=True)
class SearchConfig:
    """A search: the training options (the first value of each list) and the space."""

    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    optimization: OptimizationConfig = dataclasses.field(default_factory=OptimizationConfig)
    run: RunConfig = dataclasses.field(default_factory=lambda: RunConfig(
        model_dir="runs/search"))
    search: SearchOptions = dataclasses.field(default_factory=SearchOptions)
    space: dict = dataclasses.field(default_factory=dict)

    # The flags of these options take comma-separated lists (`sst2.cli`).
    LISTS = SEARCHABLE

    def __post_init__(self):
        if self.optimization.ema_decay or self.optimization.rdrop_alpha:
            raise UserError("sst2.search trains many heads in one step without a weight "
                            "average or R-Drop: leave --ema_decay and --rdrop_alpha out.")

    @property
    def train_config(self) -> TrainConfig:
        return TrainConfig(self.data, self.model, self.optimization, self.run)

    def searched_space(self) -> dict:
        """The lists searched: `--space_file`'s, else those of the searchable flags given
        (a flag given one value searches that value only), else `DEFAULT_SPACE`."""
        if self.search.space_file:
            try:
                with open(self.search.space_file, encoding="utf-8") as f:
                    given = json.load(f)
            except (OSError, ValueError) as e:
                raise UserError(f"--space_file={self.search.space_file}: {e}") from None
            if not isinstance(given, dict):
                raise UserError(f"--space_file={self.search.space_file} must hold an object "
                                "of option names and lists of values.")
            return parse_space({k: v if isinstance(v, list) else [v]
                                for k, v in given.items()})
        return dict(self.space) or dict(DEFAULT_SPACE)


def parse_space(given: dict) -> dict:
    """`{option: [values]}` from comma-separated strings or lists, each value checked."""
    space = {}
    for name, values in given.items():
        if name not in SEARCHABLE:
            raise UserError(f"{name!r} cannot be searched; the searchable options are "
                            f"{', '.join(SEARCHABLE)}.")
        if isinstance(values, str):
            values = [v.strip() for v in values.split(",")]
            if not all(values):
                raise UserError(f"--{name}={','.join(values)}: an empty value between "
                                "commas; give one or more comma-separated values.")
        kind = _KINDS[name]
        try:
            parsed = [kind(v) if not isinstance(v, kind) else v for v in values]
        except (TypeError, ValueError):
            raise UserError(f"--{name}={','.join(map(str, values))}: every value must be "
                            f"{_ARTICLE.get(kind, 'a')} {kind.__name__}.") from None
        if not parsed or len(set(parsed)) != len(parsed):
            raise UserError(f"--{name}: give one or more distinct values.")
        space[name] = parsed
    return space


def combinations(space: dict) -> list[dict]:
    """Every combination of the space's values, in a fixed order."""
    names = list(space)
    return [dict(zip(names, values)) for values in itertools.product(*space.values())]
