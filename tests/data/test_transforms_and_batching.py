import pytest
import torch

from msrcnn_fast.data import Compose, RandomHorizontalFlip, ResizeMinMax, collate_images
from msrcnn_fast.data.transforms import resized_size


def sample(height=40, width=60):
    image = torch.rand(3, height, width)
    masks = torch.zeros(2, height, width, dtype=torch.uint8)
    masks[0, 5:15, 10:30] = 1
    masks[1, 20:38, 40:59] = 1
    boxes = torch.tensor([[10.0, 5, 30, 15], [40, 20, 59, 38]])
    return image, {"boxes": boxes, "labels": torch.tensor([1, 2]), "masks": masks, "image_id": 7}


def mask_box(mask):
    ys, xs = torch.nonzero(mask, as_tuple=True)
    return [xs.min().item(), ys.min().item(), xs.max().item() + 1, ys.max().item() + 1]


@pytest.mark.parametrize(
    "size, min_size, max_size, expected",
    [
        ((40, 60), 80, 1000, (80, 120)),
        ((40, 60), 80, 90, (60, 90)),
        ((600, 400), 800, 1333, (1200, 800)),
        ((1, 200), 64, 64, (1, 64)),  # the short side would round to 0
        ((4000, 1), 800, 1333, (1333, 1)),
    ],
)
def test_resized_size_follows_the_min_max_rule(size, min_size, max_size, expected):
    assert resized_size(*size, min_size, max_size) == expected


def test_resize_scales_image_boxes_and_masks_together():
    image, target = sample()
    resized, out = ResizeMinMax(min_size=80, max_size=1000)(image, target)
    assert resized.shape == (3, 80, 120) and out["masks"].shape == (2, 80, 120)
    assert torch.equal(out["boxes"], target["boxes"] * 2)
    assert mask_box(out["masks"][0]) == out["boxes"][0].tolist()
    assert out["masks"].dtype == torch.uint8 and out["labels"] is target["labels"]


def test_resize_keeps_a_strip_at_least_one_pixel_tall():
    image = torch.rand(3, 1, 200)
    masks = torch.zeros(1, 1, 200, dtype=torch.uint8)
    masks[0, 0, 10:60] = 1
    target = {"boxes": torch.tensor([[10.0, 0, 60, 1]]), "labels": torch.tensor([1]), "masks": masks}
    resized, out = ResizeMinMax(min_size=64, max_size=64)(image, target)
    assert resized.shape == (3, 1, 64) and out["masks"].shape == (1, 1, 64) and out["masks"].sum() > 0
    assert torch.allclose(out["boxes"], torch.tensor([[3.2, 0, 19.2, 1]]))


def test_resize_handles_an_image_without_instances():
    image = torch.rand(3, 40, 60)
    target = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64), "masks": torch.zeros(0, 40, 60)}
    _, out = ResizeMinMax(min_size=20, max_size=100)(image, target)
    assert out["masks"].shape == (0, 20, 30) and out["boxes"].shape == (0, 4)


def test_multi_scale_resize_draws_each_size_from_the_generator():
    image, target = sample()
    resize = ResizeMinMax(min_size=(20, 40, 80), max_size=1000)
    heights = {resize(image, target, generator=torch.Generator().manual_seed(s))[0].shape[1] for s in range(30)}
    assert heights == {20, 40, 80}


def test_flip_mirrors_boxes_and_masks_consistently():
    image, target = sample()
    flipped, out = RandomHorizontalFlip(1.0)(image, target)
    assert torch.equal(flipped, image.flip(-1))
    assert out["boxes"].tolist() == [[30.0, 5, 50, 15], [1, 20, 20, 38]]
    assert [mask_box(m) for m in out["masks"]] == out["boxes"].tolist()
    again, back = RandomHorizontalFlip(1.0)(flipped, out)
    assert torch.equal(again, image) and torch.equal(back["boxes"], target["boxes"])


def test_flip_probability_zero_is_the_identity_and_seeded_flips_repeat():
    image, target = sample()
    assert RandomHorizontalFlip(0.0)(image, target)[0] is image
    flip = Compose([RandomHorizontalFlip(0.5)])
    outcomes = [
        flip(image, target, generator=torch.Generator().manual_seed(s))[1]["boxes"][0, 0].item() for s in range(20)
    ]
    repeat = [
        flip(image, target, generator=torch.Generator().manual_seed(s))[1]["boxes"][0, 0].item() for s in range(20)
    ]
    assert outcomes == repeat and set(outcomes) == {10.0, 30.0}


def test_collate_keeps_each_image_at_its_own_size():
    a, b = sample(40, 60), sample(70, 33)
    batch = collate_images([a, b])
    assert batch.image_sizes == [(40, 60), (70, 33)] and batch.image_ids == [7, 7]
    views = batch.images()
    assert views[0] is a[0] and views[1] is b[0]
    moved = batch.to("cpu")
    assert torch.equal(moved.images()[1], b[0]) and moved.targets[1]["image_id"] == 7


def test_collate_costs_no_memory_beyond_the_images():
    """A 4000x3000 photo in a batch of small images (hostile data): padding every image to the
    largest made the batch 3 x 4000 x 3008 floats (there, 144 MB per image)."""
    huge, small = sample(3000, 4000), sample(1, 1)
    batch = collate_images([huge, small, small])
    storages = {image.untyped_storage().data_ptr(): image.untyped_storage().nbytes() for image in batch.images()}
    assert sum(storages.values()) == (3000 * 4000 + 1) * 3 * 4


def test_collate_of_nothing_is_an_error():
    with pytest.raises(ValueError, match="empty list"):
        collate_images([])
