"""Whether a run's two assets, the dataset and the pretrained model, can be had.

Without network access a run must fail in seconds, with one message naming
every missing asset and the offline way to provide it, not after minutes of
retries.

Example:
    >>> check_assets(DataConfig(data_dir=data_dir), preset)        # both local: fine
    >>> check_assets(DataConfig(data_dir="/nowhere", download=False), preset)
    Traceback (most recent call last):
    ...
    sst2.errors.UserError: GLUE SST-2 is not in the tfds data dir /nowhere ...
"""

from sst2 import data, presets
from sst2.config import DataConfig
from sst2.errors import UserError


def check_assets(data_config: DataConfig, preset: str) -> None:
    """Raises one `UserError` naming every asset that is neither local nor reachable."""
    problems = []
    try:
        data.ensure_prepared(data_config.data_dir, download=False)
    except UserError:
        if not (data_config.download and data.can_reach(data.SST2_URL)):
            problems.append(data.missing_data_message(data_config.data_dir))
    try:
        kind = presets.describe_preset(preset)
    except UserError as e:
        problems.append(str(e))
    else:
        host = presets.DOWNLOAD_HOSTS.get(kind)
        if host and not data.can_reach(host):
            problems.append(f"The model preset {preset!r} must be downloaded from "
                            f"{host}, which cannot be reached.\n{presets.OFFLINE_MODEL_HELP}")
    if problems:
        raise UserError("\n\n".join(problems))
