// Inputs to classify (dropnet-test --predict): the samples a trained net is asked about, read as
// 8-bit images like the training data, so the config's transform (scale, mean, crop) applies as
// it did in training. Three forms, told apart by their content:
//   IDX images (MNIST's format, plain or gzip'd: magic 2051), labels from an IDX label file if given;
//   .npy float32 (N, H, W) or (N, C, H, W) holding pixel values (integers 0-255, before the
//       transform), labels from a .npy of N integers if given;
//   an image list (text): `path` or `path label` per line, relative paths from the list's folder;
//       images are decoded and resized to the net's stored sample size (channels, height, width).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "data/dataset.h"

namespace dropnet::data {

struct PredictionInput {
  std::string path;         // the samples
  std::string labels;       // optional: their labels (IDX or .npy), for accuracy and the confusion matrix
  int channels = 1;         // the net's stored sample shape (an image list is decoded to it)
  int height = 0, width = 0;
  bool bgr = true;          // color images' channel order (as the config's image_list)
  int num_classes = 0;      // 0 = from the labels
};

struct PredictionSamples {
  std::shared_ptr<const Dataset> samples;  // in the input's order
  bool labeled = false;                    // every sample has its true label
  std::vector<int32_t> labels;             // the true labels, when labeled
  std::string format;                      // "IDX", "npy", "image list"
};

PredictionSamples load_prediction_input(const PredictionInput& in);

}  // namespace dropnet::data
