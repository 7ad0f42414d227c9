// Image lists (Caffe ImageData style): a list file of `relative/path label` lines, or one folder
// per class under a root (labels from the sorted folder names). JPEG and PNG are decoded with
// stb_image after checking the header's dimensions against a cap; images are optionally resized
// (bilinear, half-pixel centres) to an exact size or to a shorter side, and stored (C, H, W) in
// BGR (Caffe's order) or RGB.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "data/dataset.h"

namespace dropnet::data {

struct ImageListOptions {
  std::string list;  // list file; empty = folder-per-class under `root`
  std::string root;  // class folders, or the directory list paths are relative to (default: the list's)
  int channels = 3;  // 3 (color) or 1 (gray)
  bool bgr = true;   // channel order of color images
  int resize_h = 0, resize_w = 0;  // exact size (both > 0), or
  int resize_shorter = 0;          // shorter side (aspect kept); 0 = no resize
  int64_t max_pixels = int64_t{64} << 20;
  bool skip_bad = false;  // skip (and count) bad lines, missing and undecodable files
  int num_classes = 0;    // 0 = max label + 1 (list) or the number of folders
  // Lines may be a path alone (images to classify): their label is 0 and labeled() is false.
  // A line whose last word is not a label is then a path (which may hold spaces).
  bool labels_optional = false;
};

class ImageListDataset : public Dataset {
 public:
  explicit ImageListDataset(const ImageListOptions& opt);
  int64_t size() const override { return static_cast<int64_t>(paths_.size()); }
  int num_classes() const override { return num_classes_; }
  int channels() const override { return opt_.channels; }
  std::pair<int, int> fixed_hw() const override;
  Sample get(int64_t i, std::vector<uint8_t>& scratch) const override;
  std::string describe(int64_t i) const override;
  bool expensive() const override { return true; }

  const std::string& path(int64_t i) const { return paths_[i]; }
  int label(int64_t i) const { return labels_[i]; }
  const std::vector<std::string>& class_names() const { return class_names_; }  // folder mode
  int64_t skipped() const { return skipped_lines_ + skipped_decodes_.load(); }
  bool labeled() const { return labeled_; }  // every sample has its label (false: labels_optional lines)

 private:
  void read_list();
  void read_folders();
  // Decodes image i into scratch as (C, H, W); "" on success, else the reason.
  std::string decode(int64_t i, std::vector<uint8_t>& scratch, int* h, int* w) const;

  ImageListOptions opt_;
  std::vector<std::string> paths_;
  std::vector<int> labels_;
  std::vector<int> lines_;  // list line numbers (0 in folder mode)
  std::vector<std::string> class_names_;
  int num_classes_ = 0;
  bool labeled_ = true;
  int64_t skipped_lines_ = 0;
  mutable std::atomic<int64_t> skipped_decodes_{0};
  mutable std::unique_ptr<std::atomic<uint8_t>[]> bad_;  // 1 = known undecodable (skip_bad)
};

// Bilinear resize of an 8-bit (H, W, C) image, PyTorch/OpenCV half-pixel convention
// (align_corners = false), rounded to the nearest integer.
void resize_bilinear_hwc(const uint8_t* in, int h, int w, int c, uint8_t* out, int oh, int ow);

}  // namespace dropnet::data
