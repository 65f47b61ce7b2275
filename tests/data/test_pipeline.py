"""The transform lists (timm's composition) and grain loaders (determinism, workers, resume, sharding)."""

import grain
import numpy as np
import pytest

from convnext_jax.data import DigitsSource, SyntheticSource, create_loader, eval_transforms, train_transforms


def _batches(loader, n):
    it = iter(loader)
    return [next(it) for _ in range(n)]


def test_loader_is_deterministic_by_seed_and_reshuffles_per_epoch():
    src = DigitsSource("train", 32)

    def make(seed):
        return create_loader(src, batch_size=32, transforms=train_transforms(32), shuffle=True, seed=seed)

    a, b, c = _batches(make(0), 3), _batches(make(0), 3), _batches(make(1), 3)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x["image"], y["image"])
        np.testing.assert_array_equal(x["label"], y["label"])
    assert not np.array_equal(a[0]["label"], c[0]["label"])
    assert a[0]["image"].shape == (32, 32, 32, 3) and a[0]["image"].dtype == np.uint8
    steps_per_epoch = len(src) // 32
    it = iter(make(0))
    epoch0 = [next(it)["label"] for _ in range(steps_per_epoch)]
    epoch1 = next(it)["label"]
    assert not np.array_equal(epoch0[0], epoch1)


def test_worker_processes_are_deterministic_and_cover_the_epoch():
    """grain assigns whole batches to workers round-robin, so the batch order depends on
    worker_count; for a given count it is reproducible, and every epoch holds the same records."""
    src = SyntheticSource(num_examples=64, image_size=16, num_classes=5)
    kw = dict(batch_size=8, transforms=eval_transforms(16, crop_pct=1.0), shuffle=True, seed=3, num_epochs=1)

    def epoch(workers):
        batches = list(create_loader(src, worker_count=workers, **kw))
        return batches, sorted(image.tobytes() for b in batches for image in np.asarray(b["image"]))

    first, first_set = epoch(2)
    second, _ = epoch(2)
    for x, y in zip(first, second):
        np.testing.assert_array_equal(x["image"], y["image"])
    _, serial_set = epoch(0)
    _, one_worker_set = epoch(1)  # one worker: batches stacked straight into shared memory (as grain does for 2+)
    assert len(first_set) == 64 and first_set == serial_set == one_worker_set


def test_iterator_state_restores_the_exact_position():
    src = DigitsSource("train", 32)
    kw = dict(batch_size=16, transforms=train_transforms(32), shuffle=True, seed=0)
    it = iter(create_loader(src, **kw))
    for _ in range(5):
        next(it)
    state = it.get_state()
    expected = _batches_from(it, 3)
    resumed = iter(create_loader(src, **kw))
    resumed.set_state(state)
    for x, y in zip(expected, _batches_from(resumed, 3)):
        np.testing.assert_array_equal(x["image"], y["image"])


def _batches_from(it, n):
    return [next(it) for _ in range(n)]


def test_shards_are_disjoint_and_cover_the_data():
    src = SyntheticSource(num_examples=40, image_size=8, num_classes=1000)
    shards = []
    for index in range(2):
        shard = grain.sharding.ShardOptions(shard_index=index, shard_count=2, drop_remainder=True)
        loader = create_loader(
            src,
            batch_size=4,
            transforms=eval_transforms(8, crop_pct=1.0),
            shuffle=True,
            num_epochs=1,
            shard_options=shard,
            drop_remainder=False,
        )
        shards.append({image.tobytes() for b in loader for image in np.asarray(b["image"])})
    assert len(shards[0]) == len(shards[1]) == 20
    assert not shards[0] & shards[1]


def test_invalid_loader_arguments():
    with pytest.raises(ValueError, match="batch_size"):
        create_loader(SyntheticSource(4, 8), batch_size=0, transforms=[], shuffle=False)
    with pytest.raises(ValueError, match="empty"):
        create_loader(SyntheticSource(0, 8), batch_size=1, transforms=[], shuffle=False)


def test_train_transform_composition():
    names = [type(op).__name__ for op in train_transforms(32, auto_augment="rand-m9-mstd0.5-inc1", color_jitter=0.4)]
    assert names == ["RandomResizedCrop", "RandomHorizontalFlip", "RandAugment", "ToArray"]
    names = [type(op).__name__ for op in train_transforms(32, color_jitter=0.4, hflip=0.0)]
    assert names == ["RandomResizedCrop", "ColorJitter", "ToArray"]


class _Indexed:
    """Digits images labelled by their index (so the copies of one image can be found)."""

    def __init__(self, count=48):
        self.digits, self.count = DigitsSource("train", 32), count

    def __len__(self):
        return self.count

    def __getitem__(self, index):
        return {**self.digits[index], "label": index}


@pytest.mark.parametrize("processes, slots", [(1, 4), (2, 2)])
def test_repeated_augmentation_spreads_differently_augmented_copies_over_slots(processes, slots):
    """aug_repeats=3 (timm's RepeatAugSampler): every global batch holds each of its images 3 times,
    never twice in one slot (device / micro-step), each copy augmented differently; an epoch keeps
    its length and shows a third of the images; the iterator resumes exactly."""
    source, batch = _Indexed(48), 12
    kw = dict(
        batch_size=batch // processes,
        transforms=train_transforms(32),
        shuffle=True,
        seed=0,
        num_epochs=2,
        repeats=3,
        slots_per_process=slots,
    )
    loaders = [
        create_loader(source, shard_options=grain.sharding.ShardOptions(p, processes), **kw) for p in range(processes)
    ]
    iterators = [iter(loader) for loader in loaders]
    rows = batch // (processes * slots)
    seen = []
    for _ in range(len(source) // batch):  # one epoch
        parts = [next(it) for it in iterators]
        labels = np.concatenate([part["label"] for part in parts])
        seen += list(labels)
        assert sorted(np.unique(labels, return_counts=True)[1]) == [3] * (batch // 3)
        for part in parts:
            for chunk in range(slots):
                in_slot = part["label"][chunk * rows : (chunk + 1) * rows]
                assert len(set(in_slot)) == len(in_slot)
        images = np.concatenate([part["image"] for part in parts])
        first = labels[0]
        copies = images[labels == first]
        assert not np.array_equal(copies[0], copies[1]) or not np.array_equal(copies[1], copies[2])
    assert len(seen) == len(source) and len(set(seen)) == len(source) // 3
    state = iterators[0].get_state()
    expected = [next(iterators[0])["label"] for _ in range(2)]
    resumed = iter(loaders[0])
    resumed.set_state(state)
    assert all(np.array_equal(next(resumed)["label"], want) for want in expected)
