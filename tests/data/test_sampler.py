import itertools

import pytest

from msrcnn_fast.data import TrainingBatchSampler


def take(sampler, count):
    return list(itertools.islice(iter(sampler), count))


def indices(batches):
    return [[index for index, _ in batch] for batch in batches]


def test_each_epoch_visits_every_image_in_a_new_order():
    sampler = TrainingBatchSampler(dataset_size=10, images_per_rank=2, seed=3)
    assert sampler.iters_per_epoch == 5
    epochs = indices(take(sampler, 10))
    first, second = sum(epochs[:5], []), sum(epochs[5:], [])
    assert sorted(first) == list(range(10)) and sorted(second) == list(range(10))
    assert first != second


def test_an_incomplete_last_batch_is_filled_from_the_start_of_the_epoch():
    sampler = TrainingBatchSampler(dataset_size=5, images_per_rank=2)
    epoch = sum(indices(take(sampler, 3)), [])
    assert len(epoch) == 6 and sorted(set(epoch)) == list(range(5)) and epoch[5] == epoch[0]


def test_ranks_split_the_single_process_global_batch():
    single = take(TrainingBatchSampler(dataset_size=11, images_per_rank=4, seed=5), 7)
    ranks = [
        take(TrainingBatchSampler(dataset_size=11, images_per_rank=2, world_size=2, rank=r, seed=5), 7) for r in (0, 1)
    ]
    for step in range(7):
        assert ranks[0][step] + ranks[1][step] == single[step]  # indices and augmentation seeds


def test_starting_at_an_iteration_continues_the_same_sequence():
    full = take(TrainingBatchSampler(dataset_size=7, images_per_rank=3, seed=1), 12)
    resumed = take(TrainingBatchSampler(dataset_size=7, images_per_rank=3, seed=1, start_iter=5), 7)
    assert resumed == full[5:]


def test_augmentation_seeds_differ_between_positions_and_epochs():
    batches = take(TrainingBatchSampler(dataset_size=6, images_per_rank=3, seed=0), 4)
    seeds = [seed for batch in batches for _, seed in batch]
    assert len(set(seeds)) == len(seeds) and all(0 <= s < 2**63 for s in seeds)


def test_seeds_change_the_order():
    a = indices(take(TrainingBatchSampler(dataset_size=20, images_per_rank=20, seed=0), 1))
    b = indices(take(TrainingBatchSampler(dataset_size=20, images_per_rank=20, seed=1), 1))
    assert a != b


def test_bad_arguments():
    with pytest.raises(ValueError, match="training set is empty"):
        TrainingBatchSampler(dataset_size=0, images_per_rank=1)
    with pytest.raises(ValueError, match=r"rank 2 is not in \[0, world_size=2\)"):
        TrainingBatchSampler(dataset_size=3, images_per_rank=1, world_size=2, rank=2)
