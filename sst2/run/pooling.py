"""How a head pools a layer's token states into one vector: the poolings, by name.

`--pooling`'s choices, the log's description, the pooled width and whether the
head must read every token (a learned pooling: the cache keeps every token's
features) come from `POOLINGS`; the computation of each is
`sst2.model.pooling`'s. Adding a pooling is one entry here and its computation
there.

Example:
    >>> sorted(POOLINGS)
    ['attention', 'cls', 'cls_mean', 'mean']
    >>> POOLINGS["cls_mean"].vectors, POOLINGS["attention"].learned
    (2, True)
"""

import dataclasses


@dataclasses.dataclass(frozen=True)
class Pooling:
    """A pooling as the options, the cache and the log know it.

    Args:
        label: how the log names it.
        vectors: how many vectors of the hidden width it makes of a layer's states.
        learned: whether it has weights the head trains (it then reads every token).
    """

    label: str
    vectors: int
    learned: bool = False


POOLINGS = {
    "cls": Pooling("[CLS]", 1),
    "mean": Pooling("mean", 1),
    "cls_mean": Pooling("[CLS] + mean", 2),
    "attention": Pooling("attention", 1, learned=True),
}
