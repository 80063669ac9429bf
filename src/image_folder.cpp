// Image folders in torchvision's ImageFolder layout: decoded in parallel, converted to grey, resized by
// area averaging to one size, and cached decoded (like the IDX files) so the next run starts at once.
#include <libdeflate.h>

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cctype>
#include <cstring>
#include <mutex>
#include <numeric>
#include <span>

#include "softreg/decoded_cache.hpp"
#include "softreg/error.hpp"
#include "softreg/idx.hpp"
#include "softreg/image.hpp"
#include "softreg/parallel.hpp"
#include "softreg/sources.hpp"

namespace softreg {
namespace fs = std::filesystem;
namespace {

// The size images are resized to when their sizes differ and none is asked for: MNIST's.
constexpr int kDefaultSide = 28;

bool hidden(const fs::path& path) {
  return path.filename().string().starts_with(".");
}

std::string lowercase_extension(const fs::path& path) {
  std::string ext = path.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
  return ext;
}

// The class folders of a split, sorted.
std::vector<fs::path> class_folders_of(const fs::path& split_folder) {
  std::vector<fs::path> found;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(split_folder, ec)) {
    std::error_code type_ec;
    if (!hidden(entry.path()) && entry.is_directory(type_ec)) found.push_back(entry.path());
  }
  if (ec) throw Error::in_file(split_folder, "cannot be listed: " + ec.message());
  std::sort(found.begin(), found.end());
  return found;
}

struct Listing {
  std::vector<std::string> classes;
  std::vector<fs::path> files;
  std::vector<Label> labels;
};

// A split folder and its class folders (class_folders_of), listed once.
struct SplitFolder {
  fs::path folder;
  std::vector<fs::path> class_folders;
};

// The class names of the training and test folders, sorted: the training folder's and any that only the
// test folder has, as a CSV or NPY table's labels are the distinct values of both its sets. A class
// without training images is then a warning (the model cannot learn it), not a different numbering of
// each split. A validation folder's classes must be among them, as a validation table's must.
std::vector<std::string> class_names_of(std::span<const SplitFolder> splits) {
  std::vector<std::string> names;
  for (const SplitFolder& split : splits) {
    for (const fs::path& folder : split.class_folders)
      names.push_back(folder.filename().string());
  }
  std::sort(names.begin(), names.end());
  names.erase(std::unique(names.begin(), names.end()), names.end());
  if (names.size() > static_cast<std::size_t>(kMaxClasses)) {
    throw Error::in_file(splits.front().folder,
                         fmt::format("has {} class folders{}; at most {} are supported", names.size(),
                                     splits.size() > 1 ? " with the test folder's" : "", kMaxClasses));
  }
  return names;
}

// The images of a split's class folders, in sorted order, labelled by their place in `classes`.
Listing list_split(const SplitFolder& split, const std::vector<std::string>& classes) {
  Listing listing;
  listing.classes = classes;
  if (split.class_folders.empty()) {
    // Images lying loose (Kaggle's dogs-vs-cats names its classes in the file names): said, so the fix
    // (a folder per class) is plain.
    std::size_t loose = 0;
    std::error_code ec;
    for (const auto& entry : fs::directory_iterator(split.folder, ec))
      loose += !hidden(entry.path()) && is_image_file(entry.path());
    throw Error::in_file(split.folder,
                         fmt::format("has no class folders (expected <class>/<images>){}",
                                     loose > 0 ? fmt::format("; its {} image{} lie loose: move each into a "
                                                             "folder named for its class",
                                                             loose, loose == 1 ? "" : "s")
                                               : std::string()));
  }
  for (const fs::path& folder : split.class_folders) {
    const std::string name = folder.filename().string();
    const auto at = std::lower_bound(classes.begin(), classes.end(), name);  // sorted
    if (at == classes.end() || *at != name)
      throw Error::in_file(folder, "is a class neither the training nor the test folder has");
    const std::vector<fs::path> images = image_files_under(folder);
    if (images.empty()) throw Error::in_file(folder, "is an empty class folder (no .png/.jpg/... images)");
    for (const fs::path& image : images) {
      listing.files.push_back(image);
      listing.labels.push_back(static_cast<Label>(at - classes.begin()));
    }
  }
  return listing;
}

// What the folder's cache entry must match: every file's name, size and modification time, the
// class names and the size asked for (0x0: the images' own).
std::uint64_t listing_fingerprint(const std::vector<const Listing*>& splits, int height, int width) {
  std::string text = fmt::format("{}x{}\n", height, width);
  std::error_code ec;
  for (const Listing* listing : splits) {
    for (const std::string& name : listing->classes)
      text += name + "\n";
    for (std::size_t i = 0; i < listing->files.size(); ++i) {
      const auto size = fs::file_size(listing->files[i], ec);
      const auto time = fs::last_write_time(listing->files[i], ec).time_since_epoch().count();
      text += fmt::format("{}\t{}\t{}\t{}\n", listing->files[i].string(), listing->labels[i], size, time);
    }
  }
  std::uint64_t hash = 1469598103934665603ull;  // FNV-1a over the listing, mixed with a CRC-32
  for (unsigned char c : text)
    hash = (hash ^ c) * 1099511628211ull;
  return hash ^ (std::uint64_t{libdeflate_crc32(0, text.data(), text.size())} << 32);
}

// 03: transparent pixels are composited onto black (02 dropped the alpha channel), so entries decoded
// before differ and are not reused.
constexpr std::array<char, 8> kCacheMagic = {'S', 'R', 'I', 'M', 'G', 'C', '0', '3'};

// The decoded splits share one entry: the output height and width (4 bytes each), then the training
// images' pixels, then the test images', then the validation images'.
struct DecodedImages {
  int height = 0;
  int width = 0;
  std::vector<Bytes> splits;
};

std::optional<DecodedImages> read_cache(const fs::path& entry, const CacheKey& key,
                                        const std::vector<std::size_t>& counts) {
  std::optional<Bytes> bytes = read_decoded_cache(entry, key);
  if (!bytes || bytes->size() < 8) return std::nullopt;
  std::uint32_t size[2];
  std::memcpy(size, bytes->data(), sizeof size);
  const std::size_t D = std::size_t{size[0]} * size[1];
  const std::size_t images = std::accumulate(counts.begin(), counts.end(), std::size_t{0});
  if (size[0] == 0 || size[1] == 0 || size[0] > 4096 || size[1] > 4096 || bytes->size() != 8 + images * D) {
    return std::nullopt;
  }
  DecodedImages decoded{static_cast<int>(size[0]), static_cast<int>(size[1]), {}};
  std::size_t at = 8;
  for (const std::size_t count : counts) {
    decoded.splits.push_back(bytes->subview(at, count * D));
    at += count * D;
  }
  return decoded;
}

// The size every image is resized to: the one asked for, else the images' own size when all agree
// (read from the headers only), else 28x28.
std::pair<int, int> output_size(const std::vector<const Listing*>& splits,
                                const ImageFolderOptions& options) {
  if (options.height != 0) return {options.height, options.width};
  std::optional<std::pair<int, int>> first;
  bool same = true;
  for (const Listing* listing : splits) {
    for (const fs::path& file : listing->files) {
      const auto size = image_dimensions(file);  // (width, height)
      if (!size) continue;                       // the decode reports it
      if (!first) first = size;
      same = same && *size == *first;
    }
  }
  if (first && same && static_cast<long long>(first->first) * first->second <= 4096 * 4096) {
    return {first->second, first->first};
  }
  return {kDefaultSide, kDefaultSide};
}

// Decodes every image of a listing into height x width bytes, in parallel. Unreadable images fail the
// load (naming the first in listing order) or, with skip_bad_images, are left out (of the pixels and
// the labels) and counted.
std::vector<std::uint8_t> decode_images(Listing& listing, int height, int width,
                                        const ImageFolderOptions& options, std::size_t& skipped) {
  const std::size_t D = static_cast<std::size_t>(height) * static_cast<std::size_t>(width);
  const std::size_t n = listing.files.size();
  std::vector<std::uint8_t> pixels(n * D);
  std::vector<char> ok(n, 0);
  std::mutex error_mutex;
  std::optional<std::string> first_error;
  std::size_t first_error_index = n;
  ThreadPool pool(std::max(1, options.threads));
  constexpr std::size_t kChunk = 64;
  pool.run((n + kChunk - 1) / kChunk, [&](std::size_t chunk) {
    for (std::size_t i = chunk * kChunk; i < std::min(n, (chunk + 1) * kChunk); ++i) {
      try {
        const GrayImage image = resize_area(read_gray_image(listing.files[i]), width, height);
        std::memcpy(pixels.data() + i * D, image.pixels.data(), D);
        ok[i] = 1;
      } catch (const Error& e) {
        const std::lock_guard lock(error_mutex);
        if (i < first_error_index) {  // the first bad image in listing order, whatever the thread timing
          first_error_index = i;
          first_error = e.what();
        }
      }
    }
  });
  if (first_error && !options.skip_bad_images) {
    throw Error(*first_error + " (--skip-bad-images goes on without it)");  // train, eval or data
  }
  std::size_t kept = 0;
  for (std::size_t i = 0; i < n; ++i) {
    if (!ok[i]) {
      ++skipped;
      continue;
    }
    if (kept != i) std::memmove(pixels.data() + kept * D, pixels.data() + i * D, D);
    listing.labels[kept] = listing.labels[i];
    ++kept;
  }
  pixels.resize(kept * D);
  listing.labels.resize(kept);
  return pixels;
}

Dataset images_dataset(const Listing& listing, int height, int width, Bytes pixels) {
  Dataset set;
  set.height = static_cast<std::size_t>(height);
  set.width = static_cast<std::size_t>(width);
  set.count = listing.labels.size();
  set.num_classes = static_cast<int>(listing.classes.size());
  set.class_names = listing.classes;
  set.kind = InputKind::kImages;
  set.element = ElementType::kU8;
  set.labels = listing.labels;
  set.pixels = std::move(pixels);
  return set;
}

}  // namespace

bool is_feature_file(const fs::path& path) {
  std::string ext = lowercase_extension(path);
  if (ext == ".gz") ext = lowercase_extension(path.stem());  // a compressed table, t.csv.gz
  return ext == ".npy" || ext == ".npz" || ext == ".csv" || ext == ".tsv";
}

bool is_image_file(const fs::path& path) {
  const std::string ext = lowercase_extension(path);
  // With formats softreg does not read (TIFF, HEIF, AVIF, JPEG XL): such a file is named by the error
  // that it cannot be read (or skipped and counted with --skip-bad-images), not silently left out.
  static const std::vector<std::string> kExtensions = {".png",  ".jpg",  ".jpeg", ".webp", ".bmp", ".pgm",
                                                       ".ppm",  ".pnm",  ".gif",  ".tga",  ".tif", ".tiff",
                                                       ".heic", ".heif", ".avif", ".jxl"};
  return std::find(kExtensions.begin(), kExtensions.end(), ext) != kExtensions.end();
}

std::vector<fs::path> image_files_under(const fs::path& class_folder) {
  std::vector<fs::path> found;
  std::error_code ec;
  fs::recursive_directory_iterator it(class_folder, fs::directory_options::none, ec);
  for (; !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    const fs::path& path = it->path();
    std::error_code type_ec;
    if (hidden(path)) {
      if (it->is_directory(type_ec)) it.disable_recursion_pending();
    } else if (it->is_regular_file(type_ec) && is_image_file(path)) {
      found.push_back(path);
    }
  }
  if (ec) throw Error::in_file(class_folder, "cannot be listed: " + ec.message());
  std::sort(found.begin(), found.end());
  return found;
}

namespace {

// The first of `root`/<names> that holds class folders; empty when none does.
fs::path first_labelled_folder(const fs::path& root, std::initializer_list<const char*> names) {
  std::error_code ec;
  for (const char* name : names) {
    const fs::path folder = root / name;
    if (fs::is_directory(folder, ec) && !class_folders_of(folder).empty()) return folder;
  }
  return {};
}

}  // namespace

fs::path image_test_folder(const fs::path& root) {
  return first_labelled_folder(root, {"test", "val", "valid", "validation"});
}

fs::path image_validation_folder(const fs::path& root) {
  // Beside a labelled test/ only: without one, a val/ is the test set.
  if (first_labelled_folder(root, {"test"}).empty()) return {};
  return first_labelled_folder(root, {"val", "valid", "validation"});
}

bool is_image_folder(const fs::path& folder) {
  std::error_code ec;
  if (!fs::is_directory(folder, ec) || find_data_files(folder)) return false;
  if (fs::is_directory(folder / "train", ec)) return true;
  for (const auto& entry : fs::directory_iterator(folder, ec)) {
    if (!hidden(entry.path()) && entry.is_directory(ec)) return true;
  }
  return false;
}

ImageFolderData load_image_folder(const fs::path& folder, const ImageFolderOptions& options) {
  if ((options.height == 0) != (options.width == 0) || options.height < 0 || options.width < 0 ||
      options.height > 4096 || options.width > 4096) {
    throw UsageError(fmt::format("--image-size must be HxW with sides from 1 to 4096, got {}x{}",
                                 options.height, options.width));
  }
  std::error_code ec;
  const bool has_train = fs::is_directory(folder / "train", ec);
  const fs::path train_folder = has_train ? folder / "train" : folder;
  // The splits: train, then test and validation where there are such folders.
  const fs::path test_folder = has_train ? image_test_folder(folder) : fs::path();
  const fs::path validation_folder = has_train ? image_validation_folder(folder) : fs::path();
  std::vector<SplitFolder> split_folders;
  for (const fs::path& split : {train_folder, test_folder, validation_folder}) {
    if (!split.empty()) split_folders.push_back({split, class_folders_of(split)});
  }
  // The classes of train/ and test/ (split_folders[0] and, when there is one, [1]).
  const std::vector<std::string> classes =
      class_names_of(std::span(split_folders).first(test_folder.empty() ? 1 : 2));
  std::vector<Listing> splits;
  for (const SplitFolder& split : split_folders)
    splits.push_back(list_split(split, classes));
  std::vector<const Listing*> listings;
  std::vector<std::size_t> counts;
  for (const Listing& split : splits) {
    listings.push_back(&split);
    counts.push_back(split.files.size());
  }

  // A warm run finds everything in the cache from the listing alone: no image is opened.
  const fs::path cache_folder = options.use_cache ? idx_cache_folder() : fs::path();
  // The entry of the folder decoded at a size asked for (0x0: the images' own), and what it must match.
  const auto cache_entry = [&](int height, int width) {
    return cache_folder.empty()
               ? fs::path()
               : decoded_cache_entry(
                     cache_folder,
                     fmt::format("{}|{}x{}", fs::absolute(folder, ec).lexically_normal().string(), height,
                                 width),
                     "-images.img");
  };
  const auto cache_key = [&](int height, int width) {
    return CacheKey{
        kCacheMagic,
        {listing_fingerprint(listings, height, width), counts[0], counts.size() > 1 ? counts[1] : 0}};
  };
  const fs::path entry = cache_entry(options.height, options.width);
  const CacheKey key = cache_key(options.height, options.width);
  ImageFolderData data;
  data.test_folder = test_folder;
  data.validation_folder = validation_folder;
  // Where the splits go: the training set, then the test and validation sets present.
  std::vector<Dataset*> sets = {&data.train};
  if (!test_folder.empty()) sets.push_back(&data.test.emplace());
  if (!validation_folder.empty()) sets.push_back(&data.validation.emplace());
  std::optional<DecodedImages> cached = read_cache(entry, key, counts);
  if (!cached && options.height != 0 && !entry.empty()) {
    // The folder decoded at the images' own size serves a request for that same size: a model trained
    // without --image-size, reading its folder again at its input size, decodes nothing.
    cached = read_cache(cache_entry(0, 0), cache_key(0, 0), counts);
    if (cached && (cached->height != options.height || cached->width != options.width)) cached.reset();
  }
  if (cached) {
    for (std::size_t i = 0; i < splits.size(); ++i)
      *sets[i] = images_dataset(splits[i], cached->height, cached->width, std::move(cached->splits[i]));
    return data;
  }

  const auto [height, width] = output_size(listings, options);
  std::vector<std::vector<std::uint8_t>> pixels;
  for (std::size_t i = 0; i < splits.size(); ++i) {
    pixels.push_back(decode_images(splits[i], height, width, options, data.skipped));
    if (splits[i].labels.empty())
      throw Error::in_file(split_folders[i].folder, "none of its images could be read");
  }
  // Only a complete decode is cached: a run with skipped images decodes again (and reports them again).
  if (data.skipped == 0 && !entry.empty()) {
    std::vector<std::uint8_t> bytes(8);
    const std::uint32_t size[2] = {static_cast<std::uint32_t>(height), static_cast<std::uint32_t>(width)};
    std::memcpy(bytes.data(), size, sizeof size);
    for (const std::vector<std::uint8_t>& split : pixels)
      bytes.insert(bytes.end(), split.begin(), split.end());
    write_decoded_cache(entry, key, bytes);
  }
  for (std::size_t i = 0; i < splits.size(); ++i)
    *sets[i] = images_dataset(splits[i], height, width, Bytes(std::move(pixels[i])));
  return data;
}

}  // namespace softreg
