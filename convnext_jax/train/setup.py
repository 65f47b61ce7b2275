"""Everything a training run is built from, derived from its config alone: data sources and
loaders, the model, the task, the optimizer and LR schedule, the device layout and the initial
train state. Nothing here writes to the workdir but device_memory_gb's cache of step peaks.
Other commands (compare, bench) build their pieces with the same functions, so they train what
`main` trains.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from typing import Any

import jax
import ml_collections
import optax
from flax import nnx

from convnext_jax.data import create_loader, make_source
from convnext_jax.data.from_config import train_transforms_of
from convnext_jax.data.on_device import InputStage
from convnext_jax.data.robustness import IMAGENET_CLASSES, extra_set_source
from convnext_jax.errors import ConfigError
from convnext_jax.models.config import ConvNeXtConfig
from convnext_jax.models.naming import layer_ids
from convnext_jax.models.variants import model_config
from convnext_jax.run_files import MEMORY_FIT_FILE
from convnext_jax.train.config import model_overrides
from convnext_jax.train.memory_fit import (
    MemoryFit,
    PeakCache,
    fit_micro_batch,
    shape_key,
    step_peak_bytes,
    with_accumulation,
)
from convnext_jax.train.optim import LearningRate, build_optimizer, scaled_lr
from convnext_jax.train.parallel import Layout, layout_of
from convnext_jax.train.state import LossScaling, TrainState
from convnext_jax.train.tasks import Task, task_of
from convnext_jax.weights import encoder_config, source_config, variant_name
from convnext_jax.weights import load_pretrained as load


def extra_sources_of(config: ml_collections.ConfigDict, num_classes: int) -> dict[str, Any]:
    """The sources of `eval.extra_sets`, opened now (a set that is not prepared fails at the start of
    a run, not after it)."""
    names = list(config.eval.extra_sets)
    if names and num_classes != IMAGENET_CLASSES:
        raise ConfigError(
            f"eval.extra_sets ({', '.join(names)}) are ImageNet-1k benchmarks, but the model has "
            f"{num_classes} classes: leave them out for this dataset"
        )
    sources = {}
    for name in names:
        try:
            sources[name] = extra_set_source(name, config.data.data_dir or None)
        except (FileNotFoundError, ValueError) as e:
            raise ConfigError(f"eval.extra_sets {name!r}: {e}") from None
    return sources


def data_sources(config: ml_collections.ConfigDict) -> tuple[Any, Any]:
    """The train and val sources; val uses the train split's class names (image folders)."""
    options = {"on_bad_image": config.data.on_bad_image} if config.data.source.startswith("folder:") else {}
    train = make_source(
        config.data.source, "train", data_dir=config.data.data_dir or None, image_size=config.data.image_size, **options
    )
    val = make_source(
        config.data.source,
        "val",
        data_dir=config.data.data_dir or None,
        image_size=config.data.image_size,
        class_names=getattr(train, "class_names", None),
        **options,
    )
    return train, val


def _pretrained_config(path: str) -> ConvNeXtConfig:
    """The classifier architecture of pretrained weights (an FCMAE's encoder for pre-training weights)."""
    return encoder_config(source_config(path))


def model_config_of(config: ml_collections.ConfigDict, num_classes: int) -> ConvNeXtConfig:
    """The model the config describes. With an empty model.name, the architecture of the
    weights in model.init_from (its variant's options, or the inferred depths and widths)."""
    model = config.model
    overrides = model_overrides(model)
    name = model.name
    if not name:
        found = _pretrained_config(os.path.expanduser(model.init_from))
        name = variant_name(found)
        if name is None:  # a custom architecture: its own depths and widths
            overrides.setdefault("depths", found.depths)
            overrides.setdefault("dims", found.dims)
            name = "convnextv2_atto" if found.use_grn else "convnext_atto"
    return model_config(name, num_classes=num_classes, **overrides)


def steps_per_epoch_of(config: ml_collections.ConfigDict, train_size: int) -> int:
    steps = train_size // config.batch_size
    if steps < 1:
        raise ConfigError(
            f"batch_size {config.batch_size} is larger than the training set ({train_size} images): "
            f"use a batch_size of at most {train_size}"
        )
    return steps


def train_loader_of(config: ml_collections.ConfigDict, source: Any, *, batch_size: int, slots_per_process: int) -> Any:
    """The training batches of `config` (a process's `batch_size` per optimizer step, split into
    `slots_per_process` device micro-batches): the pipeline training uses, and the one that feeds
    the PyTorch side of a comparison the same batches."""
    return create_loader(
        source,
        batch_size=batch_size,
        shuffle=True,
        seed=config.seed,
        worker_count=config.data.workers,
        threads=config.data.threads or None,
        transforms=train_transforms_of(config),
        repeats=config.data.aug_repeats,
        slots_per_process=slots_per_process,
    )


def peak_lr_of(config: ml_collections.ConfigDict) -> float:
    """The peak LR: optim.lr scaled with the batch (optim.lr_scaling)."""
    optim = config.optim
    return scaled_lr(optim.lr, config.batch_size, rule=optim.lr_scaling, base_batch=optim.lr_base_batch)


def warmup_steps_of(config: ml_collections.ConfigDict, steps_per_epoch: int) -> int:
    """The LR warmup in optimizer steps: optim.warmup_steps, else optim.warmup_epochs of steps."""
    return config.optim.warmup_steps or config.optim.warmup_epochs * steps_per_epoch


def learning_rate_of(config: ml_collections.ConfigDict, steps_per_epoch: int) -> LearningRate:
    """The run's LR schedule (warmup and decay over its optimizer steps)."""
    return LearningRate(
        config.num_epochs * steps_per_epoch,
        schedule=config.optim.schedule,
        warmup_steps=warmup_steps_of(config, steps_per_epoch),
    )


def schedule_of(config: ml_collections.ConfigDict, steps_per_epoch: int) -> Callable[[int], float]:
    """step -> the LR the optimizer applies at that optimizer step (0-based), as a number for logs."""
    learning_rate, peak, low = learning_rate_of(config, steps_per_epoch), peak_lr_of(config), config.optim.min_lr
    return lambda step: float(learning_rate(step, peak, low))


def loss_scaling_of(config: ml_collections.ConfigDict) -> LossScaling | None:
    if config.model.dtype != "float16":
        return None
    return LossScaling(init_scale=config.optim.loss_scale_init, growth_interval=config.optim.loss_scale_growth_interval)


def micro_batch_per_process(config: ml_collections.ConfigDict, layout: Layout, task: Task) -> int:
    """Examples one process feeds per micro-step; the global micro-batch must split over the devices
    (and per device, into what the task needs: mixup pairs, say)."""
    accum = config.optim.grad_accum_steps
    micro = config.batch_size // accum
    if micro % layout.replicas:
        raise ConfigError(
            f"the micro-batch (batch_size {config.batch_size} / {accum} accumulation steps = {micro}) "
            f"does not split over the {layout.replicas} devices: use a batch_size that is a multiple "
            f"of {layout.replicas * accum}"
        )
    problem = task.micro_batch_problem(micro // layout.replicas)
    if problem:
        multiple = task.micro_batch_multiple * layout.replicas * accum
        raise ConfigError(f"{problem}: use a batch_size that is a multiple of {multiple}")
    return micro // jax.process_count()


@dataclasses.dataclass
class Setup:
    """A training run's parts, built from its config (see `build`)."""

    config: ml_collections.ConfigDict
    train_source: Any
    val_source: Any
    num_classes: int
    model_cfg: Any  # the trained model's config (the task's: an FCMAEConfig for pre-training)
    architecture: ConvNeXtConfig  # the run's ConvNeXt (the classifier, or the pre-trained encoder)
    graphdef: nnx.GraphDef
    rest: nnx.State
    task: Task
    inputs: InputStage
    tx: optax.GradientTransformation
    schedule: Callable[[int], float]  # optimizer step (0-based) -> the LR the optimizer applies there
    loss_scaling: LossScaling | None
    layout: Layout
    state: TrainState
    train_loader: Any
    steps_per_epoch: int
    micro_batch: int  # per process
    pretrained: str  # what init_from loaded ('' when nothing)
    ops: str  # the op implementations the model runs with
    extra_sources: dict[str, Any] = dataclasses.field(default_factory=dict)  # eval.extra_sets, opened at the start
    memory_fit: MemoryFit | None = None  # device_memory_gb: the micro-batch chosen for the budget

    @property
    def total_steps(self) -> int:
        return self.config.num_epochs * self.steps_per_epoch

    @property
    def accum(self) -> int:
        return self.config.optim.grad_accum_steps

    @property
    def dropped_per_epoch(self) -> int:
        """Training images left out of every epoch (the last, partial batch)."""
        return len(self.train_source) - self.steps_per_epoch * self.config.batch_size


@dataclasses.dataclass
class ModelSetup:
    """What training and evaluation both build from a config: the data splits, the task and its
    freshly initialised model, on the config's device layout (see `model_setup`)."""

    layout: Layout
    train_source: Any  # for evaluation it only names the classes (image folders)
    val_source: Any
    num_classes: int
    task: Task
    micro_batch: int  # per process
    architecture: ConvNeXtConfig
    model: nnx.Module


def model_setup(config: ml_collections.ConfigDict, layout: Layout | None = None) -> ModelSetup:
    """The splits, task and model the run `config` describes (nothing loaded into the model yet)."""
    layout = layout or layout_of(config)
    train_source, val_source = data_sources(config)
    num_classes = config.model.num_classes or train_source.num_classes
    task = task_of(config, num_classes)
    architecture = model_config_of(config, num_classes)
    return ModelSetup(
        layout=layout,
        train_source=train_source,
        val_source=val_source,
        num_classes=num_classes,
        task=task,
        micro_batch=micro_batch_per_process(config, layout, task),
        architecture=architecture,
        model=task.build_model(config, architecture),
    )


def build(
    config: ml_collections.ConfigDict,
    *,
    load_pretrained: bool = True,
    layout: Layout | None = None,
    memory_fit_dir: str | None = None,
) -> Setup:
    """Build every part of the run `config` describes. `load_pretrained=False` skips
    model.init_from (a resumed run restores its own checkpoint instead). With device_memory_gb,
    the setup's config carries the derived optim.grad_accum_steps (peaks cached in
    `memory_fit_dir`/memory_fit.json; config.device_memory_cache overrides the directory)."""
    parts = model_setup(config, layout)
    layout, task, model, num_classes = parts.layout, parts.task, parts.model, parts.num_classes
    train_source, micro = parts.train_source, parts.micro_batch
    extra_sources = extra_sources_of(config, num_classes)
    steps_per_epoch = steps_per_epoch_of(config, len(train_source))
    pretrained = ""
    if config.model.init_from and load_pretrained:
        pretrained = load(model, os.path.expanduser(config.model.init_from), reset_head=config.model.reset_head)
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    schedule = schedule_of(config, steps_per_epoch)
    tx = build_optimizer(
        config.optim,
        params,
        learning_rate_of(config, steps_per_epoch),
        peak_lr=peak_lr_of(config),
        min_lr=config.optim.min_lr,
        layer_ids=layer_ids(model.cfg) if config.optim.layer_decay else None,
        decay_mask=task.weight_decay_mask(model, params),
    )
    loss_scaling = loss_scaling_of(config)
    state = layout.place_state(TrainState.create(params, tx, ema=config.ema_decay > 0, loss_scaling=loss_scaling))
    fit = None
    if config.device_memory_gb:
        fit = _fit_to_memory(config, parts, graphdef, rest, tx, state, loss_scaling, memory_fit_dir)
        config = with_accumulation(config, fit.accum)
        micro = micro_batch_per_process(config, layout, task)
    train_loader = train_loader_of(
        config,
        train_source,
        batch_size=micro * config.optim.grad_accum_steps,
        slots_per_process=config.optim.grad_accum_steps * layout.replicas // jax.process_count(),
    )
    return Setup(
        config=config,
        train_source=train_source,
        val_source=parts.val_source,
        num_classes=num_classes,
        model_cfg=model.cfg,
        architecture=parts.architecture,
        graphdef=graphdef,
        rest=rest,
        task=task,
        inputs=task.input_stage(config),
        tx=tx,
        schedule=schedule,
        loss_scaling=loss_scaling,
        layout=layout,
        state=state,
        train_loader=train_loader,
        steps_per_epoch=steps_per_epoch,
        micro_batch=micro,
        pretrained=pretrained,
        ops=model.ops.describe(),
        extra_sources=extra_sources,
        memory_fit=fit,
    )


def _fit_to_memory(
    config: ml_collections.ConfigDict,
    parts: ModelSetup,
    graphdef: Any,
    rest: Any,
    tx: Any,
    state: TrainState,
    loss_scaling: LossScaling | None,
    cache_dir: str | None,
) -> MemoryFit:
    """device_memory_gb: the largest micro-batch per device whose train step fits (memory_fit.py)."""
    directory = config.device_memory_cache or cache_dir
    cache = PeakCache(
        os.path.join(os.path.expanduser(directory), MEMORY_FIT_FILE) if directory else None,
        shape_key(config, parts.architecture, parts.layout, config.task),
    )
    inputs = parts.task.input_stage(config)

    def peak_of(micro: int, accum: int) -> int:
        return step_peak_bytes(
            graphdef,
            rest,
            tx,
            parts.task,
            state,
            parts.layout,
            micro_per_device=micro,
            accum=accum,
            image_size=config.data.image_size,
            ema_decay=config.ema_decay,
            loss_scaling=loss_scaling,
            inputs=inputs,
        )

    return fit_micro_batch(config, parts.layout, parts.task.micro_batch_multiple, peak_of, cache)
