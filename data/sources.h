// The data pipeline's entry point: builds a BatchSource from a `data.train` / `data.test` config
// section (strictly: unknown keys are errors with file:line). Matches SourceFactory.
//
// Keys (all sources):
//   source: mnist | cifar10 | image_list | packed | synthetic   (required)
//   batch_size: N (required, > 0)    shuffle: false    limit: 0 (first N samples; 0 = all)
//   prefetch: 2 (queued batches produced on a background thread; 0 = off)
//   scale: 1.0    mean: 0 | [per-channel values]    mean_file: none | auto (cifar10) | PATH.npy
//   crop: 0 (square side; random at TRAIN, center at TEST)    pad: 0 (zero border before the crop)
//   mirror: false (random horizontal flips, TRAIN only)
//   Pixels become (x - mean) * scale, Caffe's order.
// mnist:      images: PATH, labels: PATH (IDX, plain or gzip), num_classes: 10
// cifar10:    dir: PATH, files: [names] (default data_batch_1..5.bin at TRAIN, test_batch.bin at
//             TEST), records_per_file: 10000 (0 = any), mean_from: [names] (mean_file: auto; default
//             the five training batches), cache_dir: PATH (where the mean goes if dir is read-only)
// image_list: list: PATH (lines `path label`) and/or root: DIR (folder per class without list;
//             base of relative list paths, default the list's directory), channels: 3 | 1,
//             channel_order: bgr | rgb, resize: S (shorter side) | [H, W], max_pixels: 67108864,
//             skip_bad: false, num_classes: 0 (= from the labels)
// packed:     path: PATH (see data/packed.h)
// synthetic:  shape: [C, H, W], num_classes: 10, num_samples: 1024
//
// SourceRequest::shapes_only (dropnet-summary, dropnet-train --dry-run): the keys are checked as
// always, the sample shape comes from the config (mnist: the IDX header's 16 bytes, 28x28 when the
// file is missing; cifar10: 3x32x32; image_list: resize [H, W], or the crop) and nothing is loaded;
// a missing input file is a warning. A packed set is mapped for its header; an image_list without
// resize or crop is opened, as its images set the shape.
#pragma once

#include <memory>

#include "core/batch_source.h"

namespace dropnet {

std::unique_ptr<BatchSource> make_batch_source(SourceRequest& req);

namespace data {
class Dataset;
}
// The section's batch size and transform over `samples` instead of the files it names (its keys
// are checked as always, nothing of them is read): every sample once, in order, no shuffling,
// sharding or limit. For classifying other inputs with a trained net (dropnet-test --predict).
std::unique_ptr<BatchSource> make_batch_source_over(SourceRequest& req, std::shared_ptr<const data::Dataset> samples);

}  // namespace dropnet
