"""The data-set interface every loader implements.

``DATASETS.create(name, cfg)`` returns a :class:`MultiTaskData`: the tasks it labels (with
data-set-specific head sizes and loss weights) and ``split(name)`` giving a ``torch.utils.data.Dataset``
whose items are dicts ``{"image": Tensor, <task name>: label Tensor, "meta": {...}}``.

Label conventions (shared with :mod:`branchsweep.tasks`): dense labels have the image's spatial size;
``semseg``/``human_parts``/``parts``: ``int64 [H, W]`` with 255 = ignore; ``sal``/``edge``:
``float32 [1, H, W]`` in {0, 1} with 255 = ignore; ``depth``: ``float32 [1, H, W]`` with 0 = invalid;
``normals``: ``float32 [3, H, W]`` unit vectors, zero vector = invalid; vector tasks: ``float32 [C]``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from torch.utils.data import Dataset

from branchsweep.config import DataConfig
from branchsweep.errors import ConfigError
from branchsweep.registry import Registry
from branchsweep.tasks import Task


@dataclass
class MultiTaskData:
    """A multi-task data set: its tasks and a factory of splits.

    ``make_split(split, train)``: ``train`` switches on training augmentation; evaluation splits are
    returned un-augmented. ``default_backbone`` is the backbone used when the user names none.
    """

    name: str
    tasks: dict[str, Task]
    make_split: Callable[[str, bool], Dataset]
    input_shape: tuple[int, ...]
    default_backbone: str
    splits: tuple[str, ...] = ("train", "val")
    info: dict = field(default_factory=dict)
    #: Data-loader worker processes of the loops that read this data set (``DataConfig.num_workers``).
    num_workers: int = 0
    #: ``rescale(f)``: this data set loaded at ``f`` times its full resolution (None: not supported).
    #: ``info["resolution"]`` is the factor it was loaded at (1.0 when absent) and
    #: ``info["search_resolution"]`` the factor the BMTAS paper searched at.
    rescale: Callable[[float], MultiTaskData] | None = None

    @property
    def resolution(self) -> float:
        """The load-time resolution factor of this data set (1.0: full resolution)."""
        return float(self.info.get("resolution", 1.0))

    #: The same data set as a branching search reads it (e.g. Taskonomy: searched at 128², retrained
    #: at 256²); None: the search reads this one. See :meth:`for_search`.
    search_view: Callable[[], MultiTaskData] | None = None

    #: ``(H, W)`` of the images at full resolution when they are not the square ``input_shape`` the
    #: loaders crop and pad to (NYUD-v2: 425×560 images in 560² tensors); None: the tensors are the
    #: images. Networks are priced (MAdds) at the image, not at the padded tensor: :meth:`price_shape`.
    image_size: tuple[int, int] | None = None

    #: Training samples an "epoch" counts in epoch-based lengths and schedules (lr decay, temperature),
    #: when a paper's epoch is not one pass over the split on disk (Learning to Branch's Taskonomy epoch:
    #: the 275K images of the tiny split it counts, 4,296 iterations at batch 64); None: one pass.
    epoch_samples: int | None = None

    def iterations_per_epoch(self, batch_size: int, train_samples: int) -> int:
        """Iterations an epoch counts at ``batch_size``: ``epoch_samples`` (when set), else the train
        split's ``train_samples``, divided by the batch (at least 1).

        >>> MultiTaskData("d", {}, lambda s, t: None, (3, 8, 8), "x", epoch_samples=275_000).iterations_per_epoch(64, 10)
        4296
        """
        return max(1, (self.epoch_samples or train_samples) // batch_size)

    def price_shape(self, full_resolution: bool = False) -> tuple[int, ...]:
        """The input shape a network on this data set is priced at (MAdds): ``input_shape``, except for a
        data set with :attr:`image_size`, where it is the image area of an evaluation input (the image
        scaled down, aspect kept, to fit the square as evaluation does; the padding costs nothing in the
        paper's accounting). ``full_resolution``: at the data set's full resolution whatever it was loaded at.

        >>> data = MultiTaskData("d", {}, lambda s, t: None, (3, 560, 560), "resnet50", image_size=(425, 560))
        >>> data.price_shape(), data.price_shape(full_resolution=True)
        ((3, 425, 560), (3, 425, 560))
        """
        if self.image_size is None or len(self.input_shape) != 3:
            if not full_resolution or self.resolution == 1.0 or len(self.input_shape) != 3:
                return self.input_shape
            c, h, w = self.input_shape
            return (c, round(h / self.resolution), round(w / self.resolution))
        c, side, _ = self.input_shape
        scale = 1.0 if full_resolution else self.resolution
        if full_resolution:
            side = side / self.resolution
        h, w = (s * scale for s in self.image_size)
        f = min(1.0, side / max(h, w))
        return (c, max(1, round(h * f)), max(1, round(w * f)))

    def for_search(self) -> MultiTaskData:
        """The data set a branching search of this data set reads (``search_view``, else itself)."""
        if self.search_view is None:
            return self
        view = self.search_view()
        view.num_workers = self.num_workers
        return view

    def split(self, name: str, train: bool | None = None) -> Dataset:
        if name not in self.splits:
            raise ConfigError(f"data set {self.name!r} has no split {name!r} (splits: {', '.join(self.splits)})")
        return self.make_split(name, name == "train" if train is None else train)

    def select_tasks(self, names: list[str] | None) -> list[Task]:
        """The tasks to train, in the given order (all of them when ``names`` is None)."""
        if not names:
            return list(self.tasks.values())
        unknown = [n for n in names if n not in self.tasks]
        if unknown:
            raise ConfigError(
                f"unknown task {unknown[0]!r} for data set {self.name!r}; its tasks are: {', '.join(self.tasks)}"
            )
        if len(set(names)) != len(names):
            raise ConfigError(f"a task is listed twice: {', '.join(names)}")
        return [self.tasks[n] for n in names]


DATASETS: Registry[Callable[[DataConfig], MultiTaskData]] = Registry("data set")


def create_data(cfg: DataConfig) -> MultiTaskData:
    """Build the data set named by ``cfg.dataset``."""
    data = DATASETS.create(cfg.dataset, cfg)
    data.num_workers = cfg.num_workers
    return data


def check_options(cfg: DataConfig, allowed: set[str]) -> None:
    """Reject data-set options this data set does not understand."""
    unknown = sorted(set(cfg.options) - allowed)
    if unknown:
        known = ", ".join(sorted(allowed)) or "none"
        raise ConfigError(f"data set {cfg.dataset!r} takes no option {unknown[0]!r} (options: {known})")
