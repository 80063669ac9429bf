// Image folders in torchvision's ImageFolder layout: decoded in parallel, converted to grey, resized by
// area averaging to one size, and cached decoded (like the IDX files) so the next run starts at once.
#include <libdeflate.h>

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <mutex>

#include "softreg/atomic_file.hpp"
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

bool is_image_file(const fs::path& path) {
  std::string ext = path.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
  static const std::vector<std::string> kExtensions = {".png", ".jpg", ".jpeg", ".bmp", ".pgm",
                                                       ".ppm", ".pnm", ".gif",  ".tga"};
  return std::find(kExtensions.begin(), kExtensions.end(), ext) != kExtensions.end();
}

bool hidden(const fs::path& path) {
  return path.filename().string().starts_with(".");
}

std::vector<fs::path> sorted_entries(const fs::path& folder, bool directories) {
  std::vector<fs::path> found;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(folder, ec)) {
    if (hidden(entry.path())) continue;
    if (directories ? entry.is_directory(ec) : (entry.is_regular_file(ec) && is_image_file(entry.path())))
      found.push_back(entry.path());
  }
  if (ec) throw Error::in_file(folder, "cannot be listed: " + ec.message());
  std::sort(found.begin(), found.end());
  return found;
}

struct Listing {
  std::vector<std::string> classes;
  std::vector<fs::path> files;
  std::vector<Label> labels;
};

// The class folders of `split_folder` and their images, in sorted order. `classes`, when given, are the
// training classes: a test folder may not bring new ones.
Listing list_split(const fs::path& split_folder, const std::vector<std::string>* classes) {
  Listing listing;
  const std::vector<fs::path> class_folders = sorted_entries(split_folder, /*directories=*/true);
  if (class_folders.empty())
    throw Error::in_file(split_folder, "has no class folders (expected <class>/<images>)");
  listing.classes = classes ? *classes : std::vector<std::string>();
  for (const fs::path& folder : class_folders) {
    const std::string name = folder.filename().string();
    if (!classes) listing.classes.push_back(name);
    const auto at = std::find(listing.classes.begin(), listing.classes.end(), name);
    if (at == listing.classes.end()) {
      throw Error::in_file(folder, "is a class the training folder does not have");
    }
    const std::vector<fs::path> images = sorted_entries(folder, /*directories=*/false);
    if (images.empty()) throw Error::in_file(folder, "is an empty class folder (no .png/.jpg/... images)");
    for (const fs::path& image : images) {
      listing.files.push_back(image);
      listing.labels.push_back(static_cast<Label>(at - listing.classes.begin()));
    }
  }
  if (listing.classes.size() > static_cast<std::size_t>(kMaxClasses)) {
    throw Error::in_file(split_folder, fmt::format("has {} class folders; at most {} are supported",
                                                   listing.classes.size(), kMaxClasses));
  }
  return listing;
}

// What the cache entry of a split must match: every file's name, size and modification time, the
// class names and the output size.
std::uint64_t listing_fingerprint(const Listing& listing, int height, int width) {
  std::string text = fmt::format("{}x{}\n", height, width);
  for (const std::string& name : listing.classes)
    text += name + "\n";
  std::error_code ec;
  for (std::size_t i = 0; i < listing.files.size(); ++i) {
    const auto size = fs::file_size(listing.files[i], ec);
    const auto time = fs::last_write_time(listing.files[i], ec).time_since_epoch().count();
    text += fmt::format("{}\t{}\t{}\t{}\n", listing.files[i].string(), listing.labels[i], size, time);
  }
  std::uint64_t hash = 1469598103934665603ull;  // FNV-1a over the listing, mixed with a CRC-32
  for (unsigned char c : text)
    hash = (hash ^ c) * 1099511628211ull;
  return hash ^ (std::uint64_t{libdeflate_crc32(0, text.data(), text.size())} << 32);
}

struct CacheHeader {
  char magic[8];
  std::uint64_t fingerprint;
  std::uint64_t count;
  std::uint64_t pixels_size;
  std::uint32_t crc32;
  std::uint32_t reserved;
};
constexpr char kCacheMagic[8] = {'S', 'R', 'I', 'M', 'G', 'C', '0', '1'};

fs::path cache_entry(const fs::path& split_folder, int height, int width) {
  const fs::path folder = idx_cache_folder();
  if (folder.empty()) return {};
  std::error_code ec;
  const std::string key =
      fmt::format("{}|{}x{}", fs::absolute(split_folder, ec).lexically_normal().string(), height, width);
  std::uint64_t hash = 1469598103934665603ull;
  for (unsigned char c : key)
    hash = (hash ^ c) * 1099511628211ull;
  return folder / fmt::format("{:016x}-images.bin", hash);
}

std::optional<Bytes> read_cache(const fs::path& entry, std::uint64_t fingerprint, std::size_t count,
                                std::size_t pixels_size) {
  if (entry.empty()) return std::nullopt;
  std::shared_ptr<const MappedFile> mapped;
  try {
    mapped = map_file(entry);
  } catch (const Error&) {
    return std::nullopt;
  }
  CacheHeader header{};
  if (mapped->size != sizeof header + pixels_size) return std::nullopt;
  std::memcpy(&header, mapped->data, sizeof header);
  const std::uint8_t* data = mapped->data + sizeof header;
  if (std::memcmp(header.magic, kCacheMagic, sizeof kCacheMagic) != 0 || header.fingerprint != fingerprint ||
      header.count != count || header.pixels_size != pixels_size ||
      libdeflate_crc32(0, data, pixels_size) != header.crc32) {
    return std::nullopt;
  }
  return Bytes::view(mapped, data, pixels_size);
}

void write_cache(const fs::path& entry, std::uint64_t fingerprint, std::size_t count,
                 const std::vector<std::uint8_t>& pixels) {
  if (entry.empty()) return;
  CacheHeader header{};
  std::memcpy(header.magic, kCacheMagic, sizeof kCacheMagic);
  header.fingerprint = fingerprint;
  header.count = count;
  header.pixels_size = pixels.size();
  header.crc32 = libdeflate_crc32(0, pixels.data(), pixels.size());
  try {
    std::error_code ec;
    fs::create_directories(entry.parent_path(), ec);
    write_file_atomic(entry, {std::string_view(reinterpret_cast<const char*>(&header), sizeof header),
                              std::string_view(reinterpret_cast<const char*>(pixels.data()), pixels.size())});
  } catch (const Error&) {
    // The cache only saves time.
  }
}

// Decodes every image of a split into height x width bytes, in parallel. Unreadable images fail the
// load (naming the image) or, with skip_bad, are left out and counted.
Dataset decode_split(const fs::path& split_folder, Listing listing, int height, int width,
                     const ImageFolderOptions& options, std::size_t& skipped) {
  const std::size_t D = static_cast<std::size_t>(height) * static_cast<std::size_t>(width);
  const std::size_t n = listing.files.size();
  Dataset set;
  set.height = static_cast<std::size_t>(height);
  set.width = static_cast<std::size_t>(width);
  set.num_classes = static_cast<int>(listing.classes.size());
  set.class_names = listing.classes;
  set.kind = InputKind::kImages;
  set.element = ElementType::kU8;

  const fs::path entry = options.use_cache ? cache_entry(split_folder, height, width) : fs::path();
  const std::uint64_t fingerprint = listing_fingerprint(listing, height, width);
  if (std::optional<Bytes> cached = read_cache(entry, fingerprint, n, n * D)) {
    set.count = n;
    set.labels = listing.labels;
    set.pixels = std::move(*cached);
    return set;
  }

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
    throw Error(*first_error + " (pass --skip-bad-images to train without it)");
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
  if (kept == 0) throw Error::in_file(split_folder, "none of its images could be read");
  pixels.resize(kept * D);
  listing.labels.resize(kept);
  // Only a complete decode is cached: a run with skipped images decodes again (and reports them again).
  if (kept == n) write_cache(entry, fingerprint, n, pixels);
  set.count = kept;
  set.labels = std::move(listing.labels);
  set.pixels = Bytes(std::move(pixels));
  return set;
}

}  // namespace

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
  std::error_code ec;
  const bool has_train = fs::is_directory(folder / "train", ec);
  const fs::path train_folder = has_train ? folder / "train" : folder;
  Listing train = list_split(train_folder, nullptr);
  std::optional<Listing> test;
  if (has_train && fs::is_directory(folder / "test", ec)) test = list_split(folder / "test", &train.classes);

  if ((options.height == 0) != (options.width == 0) || options.height < 0 || options.width < 0 ||
      options.height > 4096 || options.width > 4096) {
    throw UsageError(fmt::format("--image-size must be HxW with sides from 1 to 4096, got {}x{}",
                                 options.height, options.width));
  }
  int height = options.height, width = options.width;
  if (height == 0) {
    // The first image's size when all agree (headers only), else 28x28.
    std::optional<std::pair<int, int>> first;
    bool same = true;
    for (const Listing* listing : {&train, test ? &*test : nullptr}) {
      if (!listing) continue;
      for (const fs::path& file : listing->files) {
        const auto size = image_dimensions(file);
        if (!size) continue;  // the decode reports it
        if (!first) first = size;
        same = same && *size == *first;
      }
    }
    if (first && same && static_cast<long long>(first->first) * first->second <= 4096 * 4096) {
      width = first->first;
      height = first->second;
    } else {
      width = height = kDefaultSide;
    }
  }
  ImageFolderData data;
  data.train = decode_split(train_folder, std::move(train), height, width, options, data.skipped);
  if (test) data.test = decode_split(folder / "test", std::move(*test), height, width, options, data.skipped);
  return data;
}

}  // namespace softreg
