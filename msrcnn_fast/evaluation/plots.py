"""The paper's score-quality figures as PNG files (matplotlib, no display needed).

Fig. 2 (a, b): MaskIoU against the score, for Mask R-CNN (classification score) and MS R-CNN
(mask score); (c): the mean of each score per MaskIoU bin. Fig. 5: predicted against
ground-truth MaskIoU. Fig. 2 keeps, as the paper does, the detections whose MaskIoU and
classification score are both above 0.5 (`min_value`), the same detections for both scorings;
Fig. 5 shows all of them. The confusion matrix of the box head on the ground-truth boxes says
whether the classifier is what holds the masks' AP back.
"""

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from msrcnn_fast.evaluation.maskiou import pearson  # noqa: E402


def _scatter(axis, x, y, title, xlabel, ylabel):
    crowded = len(x) > 500  # small faint points for many detections, visible ones for a few
    axis.scatter(x, y, s=4 if crowded else 14, alpha=0.35 if crowded else 0.8, linewidths=0)
    axis.plot([0, 1], [0, 1], color="grey", linewidth=0.8, linestyle="--")
    axis.set(xlim=(0, 1), ylim=(0, 1), xlabel=xlabel, ylabel=ylabel, title=title)
    r = pearson(x, y)
    axis.text(
        0.03, 0.93, f"r = {r:.3f}   n = {len(x)}" if not np.isnan(r) else f"n = {len(x)}", transform=axis.transAxes
    )


def plot_score_vs_maskiou(arrays, path, min_value=0.0):
    """Fig. 2 (a) and (b) side by side."""
    gt, score, mask_score = arrays["gt_maskiou"], arrays["score"], arrays["mask_score"]
    keep = (gt > min_value) & (score > min_value)
    figure, axes = plt.subplots(1, 2, figsize=(10, 4.6), constrained_layout=True)
    for axis, values, name in (
        (axes[0], score, "Mask R-CNN: classification score"),
        (axes[1], mask_score, "MS R-CNN: mask score"),
    ):
        _scatter(axis, gt[keep], values[keep], name, "ground-truth MaskIoU", "score")
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def plot_mean_score_per_maskiou_bin(arrays, path, min_value=0.0):
    """Fig. 2 (c): per MaskIoU bin of width 0.1, the mean classification score and the mean mask score."""
    gt, score, mask_score = arrays["gt_maskiou"], arrays["score"], arrays["mask_score"]
    bins = max(1, round((1.0 - min_value) / 0.1))
    edges = np.linspace(min_value, 1.0, bins + 1)
    index = np.clip(np.digitize(gt, edges) - 1, 0, bins - 1)
    selected = (
        (gt > min_value) & (score > min_value) if min_value > 0 else np.ones(len(gt), dtype=bool)
    )  # as Fig. 2 (a, b)
    means = {"classification score (Mask R-CNN)": [], "mask score (MS R-CNN)": []}
    counts = []
    for b in range(bins):
        in_bin = (index == b) & selected
        counts.append(int(in_bin.sum()))
        for values, name in ((score, "classification score (Mask R-CNN)"), (mask_score, "mask score (MS R-CNN)")):
            means[name].append(float(values[in_bin].mean()) if in_bin.any() else 0.0)
    figure, axis = plt.subplots(figsize=(8, 4.6), constrained_layout=True)
    centres, width = (edges[:-1] + edges[1:]) / 2, (edges[1] - edges[0]) * 0.4
    for offset, (name, values) in zip((-width / 2, width / 2), means.items()):
        axis.bar(centres + offset, values, width=width, label=name)
    axis.plot(centres, centres, color="grey", linewidth=0.8, linestyle="--", label="score = MaskIoU")
    axis.set(xlabel="ground-truth MaskIoU bin", ylabel="mean score", ylim=(0, 1), title="Mean score per MaskIoU bin")
    axis.set_xticks(
        centres, [f"{lo:.1f}-{hi:.1f}\n(n={n})" for lo, hi, n in zip(edges[:-1], edges[1:], counts)], fontsize=7
    )
    axis.legend(loc="upper left", fontsize=8)
    if not sum(counts):
        message = f"no detection with MaskIoU and score > {min_value:g}" if min_value > 0 else "no detections"
        axis.text(0.5, 0.5, message, transform=axis.transAxes, ha="center")
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def plot_predicted_vs_gt_maskiou(arrays, path):
    """Fig. 5: the predicted MaskIoU against the ground truth, all detections."""
    figure, axis = plt.subplots(figsize=(5, 4.6), constrained_layout=True)
    _scatter(
        axis,
        arrays["gt_maskiou"],
        arrays["predicted_maskiou"],
        "MaskIoU prediction",
        "ground-truth MaskIoU",
        "predicted MaskIoU",
    )
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def plot_confusion(classification, path):
    """The box head on the ground-truth boxes: each ground-truth category's row of predicted
    classes (background first), as shares of the row, with the counts written in."""
    confusion = classification["confusion"]
    counts = np.asarray(confusion["counts"], dtype=np.float64).reshape(len(confusion["rows"]), -1)
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    size = 1.2 + 0.55 * counts.shape[1]
    figure, axis = plt.subplots(figsize=(size + 1.5, 1.2 + 0.55 * counts.shape[0]), constrained_layout=True)
    image = axis.imshow(shares, vmin=0, vmax=1, cmap="Blues")
    for (row, column), count in np.ndenumerate(counts):
        colour = "white" if shares[row, column] > 0.6 else "black"
        axis.text(column, row, f"{int(count)}", ha="center", va="center", fontsize=8, color=colour)
    axis.set_xticks(range(counts.shape[1]), confusion["columns"], rotation=45, ha="right", fontsize=8)
    axis.set_yticks(range(counts.shape[0]), confusion["rows"], fontsize=8)
    accuracy = classification["gt_box_accuracy"]
    title = "box head on ground-truth boxes" + ("" if np.isnan(accuracy) else f": {100 * accuracy:.0f}% right")
    axis.set(xlabel="predicted class", ylabel="ground-truth category", title=title)
    figure.colorbar(image, ax=axis, label="share of the row")
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def write_plots(arrays, out_dir, min_value=0.5, classification=None):
    """The three figures into out_dir, and with `classification` (MaskScoringEvaluator's
    results["classification"]) the confusion matrix; returns their paths."""
    os.makedirs(out_dir, exist_ok=True)
    confusion = (
        []
        if classification is None
        else [plot_confusion(classification, os.path.join(out_dir, "confusion_gt_boxes.png"))]
    )
    return confusion + [
        plot_score_vs_maskiou(arrays, os.path.join(out_dir, "fig2ab_score_vs_maskiou.png"), min_value),
        plot_mean_score_per_maskiou_bin(
            arrays, os.path.join(out_dir, "fig2c_mean_score_per_maskiou_bin.png"), min_value
        ),
        plot_predicted_vs_gt_maskiou(arrays, os.path.join(out_dir, "fig5_predicted_vs_gt_maskiou.png")),
    ]
