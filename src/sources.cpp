// NumPy and CSV readers, label mapping and the choice between data sources. Image folders are in
// image_folder.cpp.
#include "softreg/sources.hpp"

#include <fmt/format.h>
#include <zip.h>
#include <zlib.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstring>
#include <deque>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <thread>

#include "shared_library.hpp"
#include "softreg/decoded_cache.hpp"
#include "softreg/download.hpp"
#include "softreg/error.hpp"
#include "softreg/idx.hpp"

namespace softreg {
namespace fs = std::filesystem;

// ---- NumPy ---------------------------------------------------------------------------------------

std::size_t NpyArray::elements() const {
  std::size_t n = 1;
  for (std::size_t d : shape)
    n *= d;
  return n;
}

namespace {

constexpr std::string_view kNpyMagic = "\x93NUMPY";
// Arrays larger than this are surely a header that lies (and would overflow size arithmetic).
constexpr std::size_t kMaxNpyElements = std::size_t{1} << 40;

// The value of `key` in the header's Python dict literal, as text: "'<f4'", "False", "(3, 4)".
std::string header_value(std::string_view header, std::string_view key, const std::string& source) {
  const std::string quoted = fmt::format("'{}'", key);
  const std::size_t at = header.find(quoted);
  if (at == std::string_view::npos) throw Error::in_file(source, fmt::format("NPY header has no '{}'", key));
  std::size_t i = header.find(':', at + quoted.size());
  if (i == std::string_view::npos) throw Error::in_file(source, "NPY header is malformed");
  ++i;
  while (i < header.size() && header[i] == ' ')
    ++i;
  std::size_t end = i;
  if (i < header.size() && header[i] == '(') {
    end = header.find(')', i);
    if (end == std::string_view::npos) throw Error::in_file(source, "NPY header's shape is malformed");
    ++end;
  } else if (i < header.size() && (header[i] == '\'' || header[i] == '"')) {
    end = header.find(header[i], i + 1);
    if (end == std::string_view::npos) throw Error::in_file(source, "NPY header's dtype is malformed");
    ++end;
  } else {
    while (end < header.size() && header[end] != ',' && header[end] != '}')
      ++end;
  }
  return std::string(header.substr(i, end - i));
}

std::vector<std::size_t> parse_shape(const std::string& text, const std::string& source) {
  std::vector<std::size_t> shape;
  std::size_t i = 1;  // after '('
  while (i < text.size()) {
    while (i < text.size() && (text[i] == ' ' || text[i] == ','))
      ++i;
    if (i >= text.size() || text[i] == ')') break;
    std::size_t value = 0;
    const auto [end, ec] = std::from_chars(text.data() + i, text.data() + text.size(), value);
    if (ec != std::errc())
      throw Error::in_file(source, fmt::format("NPY header's shape {} is malformed", text));
    shape.push_back(value);
    i = static_cast<std::size_t>(end - text.data());
  }
  return shape;
}

}  // namespace

namespace {

// What a file given in the wrong place seems to be, from its first bytes, for the error that refuses it:
// "; it is ..." or nothing.
std::string what_the_file_is(std::string_view start) {
  if (start.empty()) return "; it is empty";
  if (start.starts_with(kNpyMagic)) return "; it is a NumPy .npy file";
  if (start.starts_with("PK\x03\x04")) {
    // An Excel workbook (.xlsx) is a zip of parts: the first one's name is in the first bytes.
    if (start.find("[Content_Types].xml") != std::string_view::npos ||
        start.find("xl/") != std::string_view::npos || start.find("docProps/") != std::string_view::npos)
      return "; it is an Excel workbook: save it as CSV (CSV UTF-8)";
    return "; it is a zip archive (an .npz, or a PyTorch .pt file?)";
  }
  if (start.starts_with("\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"))
    return "; it is an Excel 97-2003 workbook (or another OLE file): save it as CSV";
  if (start.starts_with("PAR1"))
    return "; it is a Parquet file (pandas: df.to_csv, or np.save of df.to_numpy())";
  if (start.starts_with("\x89HDF\r\n\x1a\n"))
    return "; it is an HDF5 file (h5py: np.save of the dataset's array)";
  if (start.starts_with("\x80") && start.size() > 1 && start[1] >= 2 && start[1] <= 5)
    return "; it is a Python pickle (np.save writes .npy)";
  if (start.starts_with("\x1f\x8b")) return "; it is gzip-compressed: decompress it first (gunzip)";
  if (start.starts_with("\xff\xfe") || start.starts_with("\xfe\xff"))
    return "; it is UTF-16 text (a spreadsheet's \"Unicode text\"): save it as UTF-8";
  if (start.find('\0') != std::string_view::npos) return "; it holds binary data";
  return "; it is text (a CSV table?)";
}

}  // namespace

NpyArray parse_npy(const Bytes& bytes, const std::string& source) {
  const auto* p = bytes.data();
  const std::string_view start(reinterpret_cast<const char*>(p), std::min<std::size_t>(bytes.size(), 4096));
  if (start.starts_with(kNpyMagic) && bytes.size() < 10)
    throw Error::in_file(source, "NPY file is truncated in its header");
  if (!start.starts_with(kNpyMagic)) {
    throw Error::in_file(source, "not a NumPy .npy file (no \\x93NUMPY magic)" + what_the_file_is(start));
  }
  const int major = p[6];
  std::size_t header_len = 0, header_start = 0;
  if (major == 1) {
    header_len = p[8] | std::size_t{p[9]} << 8;
    header_start = 10;
  } else if (major == 2 || major == 3) {
    if (bytes.size() < 12) throw Error::in_file(source, "NPY file is truncated in its header");
    header_len = p[8] | std::size_t{p[9]} << 8 | std::size_t{p[10]} << 16 | std::size_t{p[11]} << 24;
    header_start = 12;
  } else {
    throw Error::in_file(source, fmt::format("NPY format version {} is not supported (1 to 3 are)", major));
  }
  if (header_start + header_len > bytes.size())
    throw Error::in_file(source, "NPY file is truncated in its header");
  const std::string_view header(reinterpret_cast<const char*>(p) + header_start, header_len);

  NpyArray array;
  std::string descr = header_value(header, "descr", source);
  if (descr.size() < 3 || (descr.front() != '\'' && descr.front() != '"')) {
    throw Error::in_file(source,
                         fmt::format("NPY dtype {} is not supported (structured or object array?)", descr));
  }
  array.descr = descr.substr(1, descr.size() - 2);
  const char order = array.descr[0];
  array.kind = array.descr.size() > 1 ? array.descr[1] : 0;
  std::size_t item = 0;
  const auto [end, ec] =
      std::from_chars(array.descr.data() + 2, array.descr.data() + array.descr.size(), item);
  if (array.kind == 'O') {
    throw Error::in_file(source,
                         fmt::format("NPY dtype '{}' holds Python objects (pickled), which softreg does not "
                                     "read; save text labels as strings (np.asarray(y, dtype=str))",
                                     array.descr));
  }
  const bool known_kind = std::string_view("fiubUS").find(array.kind) != std::string_view::npos;
  if (ec != std::errc() || end != array.descr.data() + array.descr.size() || !known_kind || item == 0 ||
      item > 1024) {
    throw Error::in_file(source, fmt::format("NPY dtype '{}' is not supported", array.descr));
  }
  array.big_endian = order == '>' && item > 1;
  array.item_size = array.kind == 'U' ? 4 * item : item;
  if (header_value(header, "fortran_order", source) != "False") {
    throw Error::in_file(source, "NPY array is in Fortran order; save it in C order (np.ascontiguousarray)");
  }
  array.shape = parse_shape(header_value(header, "shape", source), source);
  std::size_t elements = 1;
  for (std::size_t d : array.shape) {
    if (d != 0 && elements > kMaxNpyElements / d)
      throw Error::in_file(source, "NPY shape is implausibly large");
    elements *= d;
  }
  const std::size_t body = bytes.size() - header_start - header_len;
  if (elements > kMaxNpyElements / array.item_size || body != elements * array.item_size) {
    throw Error::in_file(source,
                         fmt::format("NPY header says {} elements of {} bytes ({} bytes), but the file "
                                     "has {} bytes after the header{}",
                                     elements, array.item_size, elements * array.item_size, body,
                                     body < elements * array.item_size ? " (truncated?)" : ""));
  }
  array.data = bytes.subview(header_start + header_len, body);
  return array;
}

NpyArray read_npy_file(const fs::path& path) {
  const std::shared_ptr<const MappedFile> mapped = map_file(path);
  return parse_npy(Bytes::view(mapped, mapped->data, mapped->size), path.string());
}

namespace {

// libzip's functions that read_npz_file calls, from the library opened at the first .npz: linked, it
// and the libcrypto it loads cost every process about 0.9 ms at start (BENCHMARKS.md, process start).
// Each is listed once, without its zip_ prefix, as cairo's are (plot/cairo_library.hpp).
#define SOFTREG_ZIP_FUNCTIONS(X) \
  X(open)                        \
  X(error_init_with_code)        \
  X(error_strerror)              \
  X(error_fini)                  \
  X(discard)                     \
  X(get_num_entries)             \
  X(stat_index)                  \
  X(fopen_index)                 \
  X(strerror)                    \
  X(fread)                       \
  X(fclose)
struct ZipLibrary {
#define SOFTREG_ZIP_POINTER(name) decltype(&::zip_##name) name = nullptr;
  SOFTREG_ZIP_FUNCTIONS(SOFTREG_ZIP_POINTER)
#undef SOFTREG_ZIP_POINTER
};

ZipLibrary open_libzip() {
  // The soname since libzip 1.0 (2015); SOFTREG_LIBZIP names another build.
  const SharedLibrary library("SOFTREG_LIBZIP", "libzip.so.4", "read .npz files",
                              "install libzip4 (scripts/setup does), or pass the arrays as .npy files");
  ZipLibrary zip;
#define SOFTREG_ZIP_RESOLVE(name) library.resolve("zip_" #name, zip.name, "is it libzip?");
  SOFTREG_ZIP_FUNCTIONS(SOFTREG_ZIP_RESOLVE)
#undef SOFTREG_ZIP_RESOLVE
  return zip;
}

// Opened once, by the first .npz (a failed attempt is tried again next time).
const ZipLibrary& libzip() {
  static const ZipLibrary zip = open_libzip();
  return zip;
}

}  // namespace

std::map<std::string, NpyArray> read_npz_file(const fs::path& path) {
  const ZipLibrary& zip = libzip();
  int error = 0;
  zip_t* archive = zip.open(path.c_str(), ZIP_RDONLY, &error);
  if (!archive) {
    zip_error_t z;
    zip.error_init_with_code(&z, error);
    const std::string message = zip.error_strerror(&z);
    zip.error_fini(&z);
    throw Error::in_file(path, "not a readable .npz (zip) file: " + message);
  }
  std::unique_ptr<zip_t, decltype(&::zip_discard)> closer(archive, zip.discard);
  std::error_code size_error;
  const zip_uint64_t file_size = fs::file_size(path, size_error);
  std::map<std::string, NpyArray> arrays;
  const zip_int64_t entries = zip.get_num_entries(archive, 0);
  for (zip_int64_t i = 0; i < entries; ++i) {
    zip_stat_t st;
    if (zip.stat_index(archive, static_cast<zip_uint64_t>(i), 0, &st) != 0 || !(st.valid & ZIP_STAT_SIZE) ||
        !(st.valid & ZIP_STAT_NAME)) {
      throw Error::in_file(path, fmt::format("entry {} of the .npz cannot be read", i));
    }
    std::string name = st.name;
    const std::string where = fmt::format("{} ({})", path.string(), name);
    // Claimed sizes are checked before anything is allocated: deflate expands at most 1032-fold.
    constexpr zip_uint64_t kMaxDeflateRatio = 1032;
    if (!(st.valid & ZIP_STAT_COMP_SIZE) || st.size > st.comp_size * kMaxDeflateRatio + 1024 ||
        st.comp_size > file_size) {
      throw Error::in_file(where, fmt::format("entry claims {} bytes from {} compressed in a {}-byte archive "
                                              "(damaged archive?)",
                                              st.size, st.comp_size, file_size));
    }
    std::vector<std::uint8_t> content(st.size);
    zip_file_t* file = zip.fopen_index(archive, static_cast<zip_uint64_t>(i), 0);
    if (!file) throw Error::in_file(where, std::string("cannot open: ") + zip.strerror(archive));
    const zip_int64_t read = zip.fread(file, content.data(), content.size());
    const int close_error = zip.fclose(file);
    if (read < 0 || static_cast<std::size_t>(read) != content.size() || close_error != 0) {
      throw Error::in_file(where, "cannot be read in full (damaged archive?)");
    }
    if (name.size() > 4 && name.ends_with(".npy")) name.resize(name.size() - 4);
    arrays.emplace(name, parse_npy(Bytes(std::move(content)), where));
  }
  return arrays;
}

namespace {

template <class T>
T load_le(const std::uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof v);  // x86 and ARM Linux are little-endian, as NPY data is here
  return v;
}

// An element of an NPY array in its byte order: a big-endian one's bytes reversed first.
template <class T>
T load_npy(const std::uint8_t* p, bool big_endian) {
  if (!big_endian) return load_le<T>(p);
  std::array<std::uint8_t, sizeof(T)> reversed;
  std::reverse_copy(p, p + sizeof(T), reversed.begin());
  return load_le<T>(reversed.data());
}

// Finite floats only: a NaN or Inf feature would turn every weight it touches into NaN.
void check_finite(const Dataset& set, const std::string& source) {
  if (set.element != ElementType::kF32) return;
  const std::size_t D = set.features();
  for (std::size_t i = 0; i < set.count; ++i) {
    const std::uint8_t* row = set.image(i);
    for (std::size_t d = 0; d < D; ++d) {
      const float v = load_le<float>(row + d * sizeof(float));
      if (!std::isfinite(v)) {
        throw Error::in_file(source, fmt::format("row {}, column {} is {} (features must be finite numbers)",
                                                 i, d, std::isnan(v) ? "NaN" : "infinite"));
      }
    }
  }
}

}  // namespace

namespace {

// An IEEE half-precision number's value (exact in float).
float float_of_half(std::uint16_t half) {
  const float sign = (half & 0x8000U) != 0 ? -1.0f : 1.0f;
  const int exponent = (half >> 10) & 0x1F;
  const auto mantissa = static_cast<float>(half & 0x3FFU);
  if (exponent == 0) return sign * std::ldexp(mantissa, -24);  // zero or subnormal
  if (exponent == 31) {
    return mantissa == 0 ? sign * std::numeric_limits<float>::infinity()
                         : std::numeric_limits<float>::quiet_NaN();
  }
  return sign * std::ldexp(1024.0f + mantissa, exponent - 25);
}

// Whether an NPY array holds numbers softreg converts: kinds f of 2, 4 or 8 bytes, i and u of 1 to 8,
// b of 1.
bool holds_numbers(const NpyArray& array) {
  const std::size_t size = array.item_size;
  switch (array.kind) {
    case 'f':
      return size == 2 || size == 4 || size == 8;
    case 'i':
    case 'u':
      return size == 1 || size == 2 || size == 4 || size == 8;
    case 'b':
      return size == 1;
    default:
      return false;
  }
}

// Element i of an array that holds_numbers, as a double.
double npy_number(const NpyArray& array, std::size_t i) {
  const std::uint8_t* e = array.data.data() + i * array.item_size;
  const bool is_signed = array.kind == 'i';
  const bool big = array.big_endian;
  switch (array.kind == 'b' ? 0 : array.item_size) {
    case 0:
      return *e != 0 ? 1.0 : 0.0;
    case 1:
      return is_signed ? static_cast<double>(load_npy<std::int8_t>(e, big))
                       : static_cast<double>(load_npy<std::uint8_t>(e, big));
    case 2:
      if (array.kind == 'f') return float_of_half(load_npy<std::uint16_t>(e, big));
      return is_signed ? static_cast<double>(load_npy<std::int16_t>(e, big))
                       : static_cast<double>(load_npy<std::uint16_t>(e, big));
    case 4:
      if (array.kind == 'f') return load_npy<float>(e, big);
      // Each side its own double: int32_t against uint32_t would make both unsigned.
      return is_signed ? static_cast<double>(load_npy<std::int32_t>(e, big))
                       : static_cast<double>(load_npy<std::uint32_t>(e, big));
    default:
      if (array.kind == 'f') return load_npy<double>(e, big);
      return is_signed ? static_cast<double>(load_npy<std::int64_t>(e, big))
                       : static_cast<double>(load_npy<std::uint64_t>(e, big));
  }
}

}  // namespace

Dataset features_from_npy(const NpyArray& array, const std::string& source) {
  if (array.shape.size() != 2) {
    // Images kept as (rows, height, width[, channels]), as Keras' mnist.npz holds them: the reshape that
    // makes rows of pixels, rather than a guess at their layout.
    throw Error::in_file(
        source,
        fmt::format(
            "features must be a 2-D array (rows x features), but it has shape ({}){}",
            fmt::join(array.shape, ", "),
            array.shape.size() > 2 ? ": for images, X.reshape(len(X), -1) makes each a row of pixels" : ""));
  }
  if (array.shape[1] == 0) throw Error::in_file(source, "features array has no columns");
  Dataset set;
  set.count = array.shape[0];
  set.height = 1;
  set.width = array.shape[1];
  set.kind = InputKind::kFeatures;
  const std::size_t n = array.elements();
  if (array.descr == "<f4" || array.descr == "=f4") {
    set.element = ElementType::kF32;
    if (reinterpret_cast<std::uintptr_t>(array.data.data()) % alignof(float) == 0) {
      set.pixels = array.data;  // in place
    } else {
      set.pixels = Bytes(std::vector<std::uint8_t>(array.data.begin(), array.data.end()));
    }
  } else if (array.kind == 'u' && array.item_size == 1) {
    set.element = ElementType::kU8;  // pixels: scaled by 1/255 as they are read
    set.pixels = array.data;
  } else if (holds_numbers(array)) {
    // float64, float16, other integers and bools: float32 numbers once, as numpy's astype(np.float32).
    set.element = ElementType::kF32;
    std::vector<std::uint8_t> floats(n * sizeof(float));
    for (std::size_t i = 0; i < n; ++i) {
      const double v = npy_number(array, i);
      if (!std::isfinite(v)) {
        throw Error::in_file(
            source, fmt::format("row {}, column {} is {} (features must be finite numbers)", i / set.width,
                                i % set.width, std::isnan(v) ? "NaN" : "infinite"));
      }
      if (std::abs(v) > 3.0e38) {
        throw Error::in_file(source, fmt::format("row {}, column {} is {}, beyond float32's range",
                                                 i / set.width, i % set.width, v));
      }
      const auto f = static_cast<float>(v);
      std::memcpy(floats.data() + i * sizeof(float), &f, sizeof f);
    }
    set.pixels = Bytes(std::move(floats));
  } else {
    throw Error::in_file(source,
                         fmt::format("features of dtype '{}' are not supported (floats of 2, 4 or 8 bytes, "
                                     "integers or bools are)",
                                     array.descr));
  }
  check_finite(set, source);
  return set;
}

RawLabels labels_from_npy(const NpyArray& array, const std::string& source) {
  const bool column = array.shape.size() == 2 && array.shape[1] == 1;
  if (array.shape.size() != 1 && !column) {
    throw Error::in_file(source, fmt::format("labels must be a 1-D array, but it has shape ({}){}",
                                             fmt::join(array.shape, ", "),
                                             array.shape.size() == 2 ? ": one-hot rows? y.argmax(axis=1) "
                                                                       "gives each row's class"
                                                                     : ""));
  }
  RawLabels labels;
  const std::size_t n = array.shape[0];
  const std::uint8_t* p = array.data.data();
  const bool big = array.big_endian;
  if (array.kind == 'i' || array.kind == 'u' || array.kind == 'b') {
    if (array.item_size != 1 && array.item_size != 2 && array.item_size != 4 && array.item_size != 8) {
      throw Error::in_file(source, fmt::format("labels of dtype '{}' are not supported", array.descr));
    }
    labels.numbers.resize(n);
    for (std::size_t i = 0; i < n; ++i) {
      const std::uint8_t* e = p + i * array.item_size;
      std::int64_t v = 0;
      const bool is_signed = array.kind == 'i';
      switch (array.item_size) {
        case 1:
          v = is_signed ? load_npy<std::int8_t>(e, big) : load_npy<std::uint8_t>(e, big);
          break;
        case 2:
          v = is_signed ? load_npy<std::int16_t>(e, big) : load_npy<std::uint16_t>(e, big);
          break;
        case 4:
          v = is_signed ? load_npy<std::int32_t>(e, big) : load_npy<std::uint32_t>(e, big);
          break;
        default: {
          const auto u = load_npy<std::uint64_t>(e, big);
          if (!is_signed && u > static_cast<std::uint64_t>(INT64_MAX)) {
            throw Error::in_file(source, fmt::format("label {} at index {} is out of range", u, i));
          }
          v = static_cast<std::int64_t>(u);
        }
      }
      labels.numbers[i] = v;
    }
  } else if (array.kind == 'f' && holds_numbers(array)) {
    // Whole numbers kept as floats, as pandas and scikit-learn often hand labels over.
    labels.numbers.resize(n);
    for (std::size_t i = 0; i < n; ++i) {
      const double v = npy_number(array, i);
      if (v != std::floor(v) || std::abs(v) > 9e15) {
        throw Error::in_file(source, fmt::format("label {} at index {} is not a whole number", v, i));
      }
      labels.numbers[i] = static_cast<std::int64_t>(v);
    }
  } else if (array.kind == 'U' || array.kind == 'S') {
    labels.is_text = true;
    labels.text.resize(n);
    for (std::size_t i = 0; i < n; ++i) {
      const std::uint8_t* e = p + i * array.item_size;
      std::string s;
      if (array.kind == 'S') {
        s.assign(reinterpret_cast<const char*>(e),
                 strnlen(reinterpret_cast<const char*>(e), array.item_size));
      } else {  // UTF-32 code points, zero-padded: written out as UTF-8
        for (std::size_t c = 0; c < array.item_size / 4; ++c) {
          const auto cp = load_npy<std::uint32_t>(e + 4 * c, big);
          if (cp == 0) break;
          if (cp < 0x80) {
            s += static_cast<char>(cp);
          } else if (cp < 0x800) {
            s += static_cast<char>(0xC0 | (cp >> 6));
            s += static_cast<char>(0x80 | (cp & 0x3F));
          } else if (cp < 0x10000) {
            s += static_cast<char>(0xE0 | (cp >> 12));
            s += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
            s += static_cast<char>(0x80 | (cp & 0x3F));
          } else {
            s += static_cast<char>(0xF0 | (cp >> 18));
            s += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
            s += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
            s += static_cast<char>(0x80 | (cp & 0x3F));
          }
        }
      }
      labels.text[i] = std::move(s);
    }
  } else {
    throw Error::in_file(
        source, fmt::format("labels of dtype '{}' are not supported (integers, whole floats or strings are)",
                            array.descr));
  }
  return labels;
}

// ---- CSV -----------------------------------------------------------------------------------------

namespace {

// The character between a table's cells, from its first line: a comma where the line has one outside
// double quotes; otherwise a tab (spreadsheets' "tab separated" text, .tsv), or a semicolon (what
// spreadsheets write as CSV where the decimal mark is a comma); a comma for a table of one column.
char cell_separator(std::string_view first_line) {
  std::size_t commas = 0, tabs = 0, semicolons = 0;
  bool quoted = false;
  for (const char c : first_line) {
    if (c == '"') quoted = !quoted;
    if (quoted) continue;
    commas += c == ',';
    tabs += c == '\t';
    semicolons += c == ';';
  }
  if (commas > 0) return ',';
  if (tabs > 0) return '\t';
  return semicolons > 0 ? ';' : ',';
}

// One CSV line's cells, split at `separator` outside double quotes, quotes removed ("" is a quote) and
// surrounding blanks trimmed (they are not part of a number). A cell is a view into the line, or into
// `unquoted_` for a cell that had quotes; both stay valid until the next split.
class CsvLineSplitter {
 public:
  explicit CsvLineSplitter(char separator) : separator_(separator) {}

  const std::vector<std::string_view>& split(std::string_view line) {
    // The separator a constant in each loop: compared with a member, the scan of a large table's cells
    // took a fifth longer (perf: split 28 -> 33 % of a parse).
    switch (separator_) {
      case '\t':
        return split_at<'\t'>(line);
      case ';':
        return split_at<';'>(line);
      default:
        return split_at<','>(line);
    }
  }

 private:
  template <char kSeparator>
  const std::vector<std::string_view>& split_at(std::string_view line) {
    cells_.clear();
    unquoted_.clear();
    std::size_t i = 0;
    while (true) {
      const std::size_t begin = i;
      bool has_quote = false;
      bool quoted = false;
      for (; i < line.size() && (quoted || line[i] != kSeparator); ++i) {
        if (line[i] == '"') {
          has_quote = true;
          quoted = !quoted;
        }
      }
      std::string_view cell = line.substr(begin, i - begin);
      if (has_quote) cell = unquote(cell);
      cells_.push_back(trim(cell));
      if (i == line.size()) break;
      ++i;  // past the separator
    }
    return cells_;
  }

  // By hand: find_first_not_of calls memchr on its set for every character, 14 % of a large table's
  // parse (perf).
  static std::string_view trim(std::string_view cell) {
    std::size_t first = 0, end = cell.size();
    while (first < end && (cell[first] == ' ' || cell[first] == '\t'))
      ++first;
    while (end > first && (cell[end - 1] == ' ' || cell[end - 1] == '\t' || cell[end - 1] == '\r'))
      --end;
    return cell.substr(first, end - first);
  }
  std::string_view unquote(std::string_view cell) {
    std::string& out = unquoted_.emplace_back();  // a deque: earlier cells' strings stay where they are
    bool quoted = false;
    for (std::size_t i = 0; i < cell.size(); ++i) {
      const char c = cell[i];
      if (quoted && c == '"' && i + 1 < cell.size() && cell[i + 1] == '"') {
        out += '"';
        ++i;
      } else if (c == '"') {
        quoted = !quoted;
      } else {
        out += c;
      }
    }
    return out;
  }

  char separator_;
  std::vector<std::string_view> cells_;
  std::deque<std::string> unquoted_;
};

std::optional<double> parse_number(std::string_view cell) {
  if (cell.empty()) return std::nullopt;
  double v = 0;
  const char* begin = cell.data() + (cell[0] == '+' ? 1 : 0);
  const auto [end, ec] = std::from_chars(begin, cell.data() + cell.size(), v);
  if (ec != std::errc() || end != cell.data() + cell.size()) return std::nullopt;
  return v;
}

// A cell's number, where a table separated by semicolons may write its decimal mark as a comma ("0,5").
std::optional<double> parse_number(std::string_view cell, bool decimal_comma) {
  std::optional<double> v = parse_number(cell);
  if (v || !decimal_comma || cell.find(',') == std::string_view::npos || cell.size() > 64) return v;
  std::array<char, 64> point;
  std::replace_copy(cell.begin(), cell.end(), point.begin(), ',', '.');
  return parse_number(std::string_view(point.data(), cell.size()));
}

// A feature cell's value: a number, or a truth value as 1 or 0 (True/False as pandas writes booleans,
// pd.get_dummies' one-hot columns among them; TRUE/FALSE as R and spreadsheets do; true/false), as
// numpy's astype(np.float32) makes bools 1 and 0.
std::optional<double> parse_feature(std::string_view cell, bool decimal_comma) {
  if (std::optional<double> v = parse_number(cell, decimal_comma)) return v;
  const auto is = [&](std::string_view word) {
    return cell.size() == word.size() &&
           std::equal(cell.begin(), cell.end(), word.begin(),
                      [](char a, char b) { return std::tolower(static_cast<unsigned char>(a)) == b; });
  };
  if (is("true")) return 1.0;
  if (is("false")) return 0.0;
  return std::nullopt;
}

// A non-blank line of a CSV text and its 1-based number.
struct CsvLine {
  std::string_view text;
  std::size_t number;
};

// How many double quotes `text` holds (memchr from one to the next: a line of numbers has none).
std::size_t quotes_in(std::string_view text) {
  std::size_t count = 0;
  for (std::size_t at = text.find('"'); at != std::string_view::npos; at = text.find('"', at + 1))
    ++count;
  return count;
}

// The non-blank lines of `text` (a UTF-8 byte-order mark at the start dropped). A quoted cell may hold
// line breaks, as spreadsheets write a note of several lines (RFC 4180): a line whose quotes are not
// yet balanced goes on past its break, and `number` is the line it starts on.
std::vector<CsvLine> csv_lines(std::string_view text) {
  if (text.starts_with("\xEF\xBB\xBF")) text.remove_prefix(3);
  std::vector<CsvLine> lines;
  std::size_t number = 0;
  while (!text.empty()) {
    std::size_t end = text.find('\n');
    std::size_t quotes = quotes_in(text.substr(0, end)), breaks = 0;
    while (quotes % 2 == 1 && end != std::string_view::npos) {
      const std::size_t next = text.find('\n', end + 1);
      quotes += quotes_in(text.substr(end + 1, next == std::string_view::npos ? next : next - end - 1));
      end = next;
      ++breaks;
    }
    const std::string_view line = text.substr(0, end);
    ++number;
    if (line.find_first_not_of(" \t\r") != std::string_view::npos) lines.push_back({line, number});
    number += breaks;
    if (end == std::string_view::npos) break;
    text.remove_prefix(end + 1);
  }
  return lines;
}

}  // namespace

namespace {

// Names for the columns a header leaves unnamed or names twice, as pandas gives them ("Unnamed: 3";
// "x", "x.1", "x.2"): tables are matched to the training table by name, and two columns of one name
// would both be read from the first. The first column keeps no name where it holds row names. Returns
// which columns the header left unnamed.
std::vector<bool> name_columns_as_pandas_does(std::vector<std::string>& header, bool row_names) {
  std::vector<bool> unnamed(header.size(), false);
  std::set<std::string> names;
  for (std::size_t c = 0; c < header.size(); ++c) {
    unnamed[c] = header[c].empty();
    if (c == 0 && row_names) continue;
    if (unnamed[c]) header[c] = fmt::format("Unnamed: {}", c);
    if (names.insert(header[c]).second) continue;
    for (std::size_t k = 1;; ++k) {
      if (std::string name = fmt::format("{}.{}", header[c], k); names.insert(name).second) {
        header[c] = std::move(name);
        break;
      }
    }
  }
  return unnamed;
}

// The columns --ignore-columns leaves unread, each given by name (in `first_row`, the header) or by
// 0-based index, negative from the end. `label_index` is the label column's (first_row.size(): none).
std::vector<bool> columns_left_unread(const std::vector<std::string>& ignored,
                                      const std::vector<std::string>& first_row, bool header,
                                      std::size_t label_index, const fs::path& path) {
  const std::size_t columns = first_row.size();
  std::vector<bool> unread(columns, false);
  for (const std::string& column : ignored) {
    if (!header) {
      throw Error::in_file(path,
                           fmt::format("--ignore-columns {} needs a header line (the model then reads its "
                                       "columns by name), but the first line is data",
                                       column));
    }
    std::size_t c = std::find(first_row.begin(), first_row.end(), column) - first_row.begin();
    long long index = 0;
    if (const auto [end, ec] = std::from_chars(column.data(), column.data() + column.size(), index);
        c == columns && ec == std::errc() && end == column.data() + column.size()) {
      const long long from_start = index < 0 ? static_cast<long long>(columns) + index : index;
      if (from_start < 0 || from_start >= static_cast<long long>(columns)) {
        throw Error::in_file(path,
                             fmt::format("--ignore-columns {} is out of range ({} columns)", index, columns));
      }
      c = static_cast<std::size_t>(from_start);
    }
    if (c == columns)
      throw Error::in_file(
          path, fmt::format("--ignore-columns: there is no column '{}' in the first line", column));
    if (c == label_index)
      throw Error::in_file(path,
                           fmt::format("--ignore-columns {}: column {} is the label column", column, c + 1));
    unread[c] = true;
  }
  return unread;
}

// A CSV table with a label column (with_labels) or of features only, parsed line by line into the
// feature buffer: no copy of its cells is kept, so memory is the floats and the labels, not many
// times the text. `path` names the table in messages; `trained` as read_csv_file says.
CsvTable read_csv_text(std::string_view text, const fs::path& path, const std::string& label_column,
                       bool with_labels, int threads, const CsvNames& trained,
                       const std::vector<std::string>& ignored) {
  const std::vector<std::string>& feature_columns = trained.features;
  // Not text (an .npy, a zip, gzip, UTF-16) would split into lines of nonsense: said for what it is.
  if (const std::string_view start = text.substr(0, 4096);
      start.find('\0') != std::string_view::npos || start.starts_with(kNpyMagic) ||
      start.starts_with("PK\x03\x04") || start.starts_with("PAR1")) {
    throw Error::in_file(path, "is not a CSV table" + what_the_file_is(start));
  }
  const std::vector<CsvLine> lines = csv_lines(text);
  if (lines.empty()) throw Error::in_file(path, "is empty");
  const char separator = cell_separator(lines[0].text);
  const bool decimal_comma = separator == ';';
  CsvLineSplitter splitter(separator);
  std::vector<std::string> first_row;
  for (std::string_view cell : splitter.split(lines[0].text))
    first_row.emplace_back(cell);
  const std::size_t columns = first_row.size();
  if (with_labels && columns < 2)
    throw Error::in_file(path, "needs a label column and at least one feature column");

  // The label column: a name (looked up in the header), an index, the training table's label column by
  // name where the header has it, or the first column.
  std::size_t label_index = with_labels ? 0 : std::string::npos;
  bool named_label = false;
  if (const auto trained_label = std::find(first_row.begin(), first_row.end(), trained.label);
      with_labels && label_column.empty() && !trained.label.empty() && trained_label != first_row.end()) {
    label_index = static_cast<std::size_t>(trained_label - first_row.begin());
    named_label = true;
  } else if (with_labels && !label_column.empty()) {
    long long index = 0;  // from the end where negative, as Python counts: -1 is the last column
    const auto [end, ec] =
        std::from_chars(label_column.data(), label_column.data() + label_column.size(), index);
    if (ec == std::errc() && end == label_column.data() + label_column.size()) {
      const long long from_start = index < 0 ? static_cast<long long>(columns) + index : index;
      if (from_start < 0 || from_start >= static_cast<long long>(columns)) {
        throw Error::in_file(path,
                             fmt::format("--label-column {} is out of range ({} columns)", index, columns));
      }
      label_index = static_cast<std::size_t>(from_start);
    } else {
      const auto it = std::find(first_row.begin(), first_row.end(), label_column);
      if (it == first_row.end()) {
        // Worded for both ways the name comes: this run's --label-column, or the model's (eval, predict).
        throw Error::in_file(path, fmt::format("the label column '{}' is not in the first line "
                                               "(--label-column NAME|INDEX says where the labels are)",
                                               label_column));
      }
      label_index = static_cast<std::size_t>(it - first_row.begin());
      named_label = true;
    }
  }
  // The first line is a header when the label is named in it, when it holds every feature column asked
  // for, when one of its feature cells is not a number, or when its label cell is text while the next
  // line's label is a number.
  const auto column_of = [&](const std::string& name) {  // a feature column's index, or npos
    for (std::size_t c = 0; c < columns; ++c) {
      if (c != label_index && first_row[c] == name) return c;
    }
    return std::string::npos;
  };
  bool header = named_label ||
                (!feature_columns.empty() &&
                 std::all_of(feature_columns.begin(), feature_columns.end(),
                             [&](const std::string& name) { return column_of(name) != std::string::npos; }));
  // An empty cell is no evidence either way (a missing value in a first row of data, or a gap in a
  // header), except where pandas writes its index: an empty first cell before its default column names
  // 0, 1, 2, ...
  for (std::size_t c = 0; c < columns; ++c) {
    if (c != label_index && !first_row[c].empty() && !parse_feature(first_row[c], decimal_comma))
      header = true;
  }
  if (!header && columns > 1 && first_row[0].empty()) {
    bool default_names = true;
    for (std::size_t c = 1; c < columns; ++c)
      default_names = default_names && first_row[c] == std::to_string(c - 1);
    header = default_names;
  }
  if (!header && with_labels && lines.size() > 1 && !first_row[label_index].empty() &&
      !parse_number(first_row[label_index], decimal_comma)) {
    const std::vector<std::string_view>& second = splitter.split(lines[1].text);
    if (label_index < second.size() && parse_number(second[label_index], decimal_comma)) header = true;
  }
  // A first column with no name in the header holds row names: pandas' DataFrame.to_csv writes its
  // index there unless given index=False, as R's write.csv does its row names. Read as a feature, the
  // row numbers would teach the model the file's order (and 0..n overflows a step at lr 0.1), so it is
  // left out, said in a note; as the default label column, the next one takes its place.
  CsvTable table;
  const bool index_given = with_labels && !named_label && !label_column.empty();
  const bool row_names = header && columns > 1 && first_row[0].empty() && !(index_given && label_index == 0);
  if (row_names) {
    if (with_labels && label_index == 0) label_index = 1;
    table.notes.push_back(fmt::format(
        "{}: column 1 has no name in the first line: read as row names (pandas' index, written by to_csv "
        "without index=False) and left out",
        path.string()));
  }
  const std::vector<bool> unnamed =
      header ? name_columns_as_pandas_does(first_row, row_names) : std::vector<bool>(columns, false);
  std::vector<bool> unread =
      columns_left_unread(ignored, first_row, header, with_labels ? label_index : columns, path);
  // A last column the header leaves unnamed, not the labels: a separator that ends every line, as some
  // exports write. Left out; a value in it is an error (below).
  const bool trailing_separator =
      header && columns > 1 && unnamed[columns - 1] && !(with_labels && label_index == columns - 1);
  if (trailing_separator) unread[columns - 1] = true;
  // The columns read as features, in order: every one but the label's, the row names and those ignored,
  // or those asked for by name.
  std::vector<std::size_t> feature_index;
  if (header && !feature_columns.empty()) {
    for (const std::string& name : feature_columns) {
      const std::size_t c = column_of(name);
      if (c == std::string::npos) {
        throw Error::in_file(path,
                             fmt::format("has no column '{}', a feature column of the training table", name));
      }
      feature_index.push_back(c);
    }
    table.features.feature_names = feature_columns;
  } else {
    for (std::size_t c = row_names ? 1 : 0; c < columns; ++c) {
      if (c == label_index || unread[c]) continue;
      feature_index.push_back(c);
      if (header) table.features.feature_names.push_back(first_row[c]);
    }
  }
  if (feature_index.empty()) {
    std::vector<std::string> taken = {"the labels"};
    if (row_names) taken.emplace_back("the row names");
    if (!ignored.empty()) taken.emplace_back("the columns ignored");
    const std::string last = taken.back();
    taken.pop_back();
    throw Error::in_file(path, fmt::format("has no feature column besides {}{}{}", fmt::join(taken, ", "),
                                           taken.empty() ? "" : " and ", last));
  }
  if (header && with_labels) table.features.label_name = first_row[label_index];
  const std::size_t first = header ? 1 : 0;
  const std::size_t n = lines.size() - first, D = feature_index.size();
  if (n == 0) throw Error::in_file(path, "has a header but no rows");

  // The rows in up to `threads` runs of consecutive lines, each parsed by a thread of its own into its
  // part of the feature buffer. Labels are kept as text and as numbers until every one has been seen:
  // whole numbers when every label cell is one, text otherwise. A run stops at its first bad line; the
  // error reported is the earliest line's, as one thread reading in order would find it.
  struct Run {
    std::size_t begin = 0, end = 0;
    std::vector<std::int64_t> numbers;
    std::vector<std::string> text;
    bool numeric = true;
    bool all_numbers = true;  // every label cell a number, whole or not
    std::size_t fraction_line = 0;
    std::string fraction;  // the first label with a fraction, on fraction_line
    std::size_t error_line = std::numeric_limits<std::size_t>::max();
    std::exception_ptr error;
  };
  constexpr std::size_t kRowsPerThread = 2048;  // fewer are parsed faster than a thread starts
  const std::size_t runs_wanted = std::clamp<std::size_t>(n / kRowsPerThread, 1, std::max(threads, 1));
  std::vector<Run> runs(runs_wanted);
  for (std::size_t t = 0; t < runs.size(); ++t) {
    runs[t].begin = n * t / runs.size();
    runs[t].end = n * (t + 1) / runs.size();
  }
  std::vector<std::uint8_t> values(n * D * sizeof(float));
  // Said of text in a named feature column while the labels came from the first column by default: most
  // likely the labels, which many exported tables keep last. The flag's value as a shell takes it: the
  // name where it needs no quotes, else the index.
  const auto maybe_the_labels = [&](std::size_t c) {
    if (!with_labels || !label_column.empty() || named_label || !header) return std::string();
    const std::string& name = first_row[c];
    const bool plain = !name.empty() && std::all_of(name.begin(), name.end(), [](char ch) {
      return std::isalnum(static_cast<unsigned char>(ch)) || ch == '_' || ch == '-' || ch == '.';
    });
    return fmt::format(
        " (if column {} holds the labels, --label-column {} says so; the default is the first "
        "column)",
        c + 1, plain ? name : std::to_string(c));
  };
  const auto parse_run = [&](Run& run) {
    CsvLineSplitter cells_of(separator);
    if (with_labels) {
      run.numbers.reserve(run.end - run.begin);
      run.text.reserve(run.end - run.begin);
    }
    std::size_t number = 0;
    try {
      for (std::size_t i = run.begin; i < run.end; ++i) {
        const CsvLine& line = lines[first + i];
        number = line.number;
        const std::vector<std::string_view>& cells = cells_of.split(line.text);
        if (cells.size() != columns) {
          throw Error::in_file(path, fmt::format("line {} has {} cells, but the first line has {}",
                                                 line.number, cells.size(), columns));
        }
        if (trailing_separator && !cells[columns - 1].empty()) {
          throw Error::in_file(path,
                               fmt::format("line {}, column {}: '{}' is in a column the first line leaves "
                                           "unnamed: name it there",
                                           line.number, columns, cells[columns - 1]));
        }
        if (with_labels) {
          const std::string_view cell = cells[label_index];
          if (cell.empty())
            throw Error::in_file(path, fmt::format("line {}: the label is missing", line.number));
          const auto v = parse_number(cell, decimal_comma);
          if (!v || *v != std::floor(*v) || std::abs(*v) > 9e15) run.numeric = false;
          if (!v) run.all_numbers = false;
          if (v && *v != std::floor(*v) && run.fraction.empty()) {
            run.fraction_line = line.number;
            run.fraction = cell;
          }
          if (run.numeric) run.numbers.push_back(static_cast<std::int64_t>(*v));
          run.text.emplace_back(cell);
        }
        float* row = reinterpret_cast<float*>(values.data()) + i * D;
        for (const std::size_t c : feature_index) {
          const std::string_view cell = cells[c];
          const auto v = parse_feature(cell, decimal_comma);
          if (!v && cell.empty()) {
            // A missing value, or a column the header leaves unnamed: a trailing comma on every line.
            throw Error::in_file(
                path, fmt::format("line {}, column {}: the cell is empty{}", line.number, c + 1,
                                  unnamed[c] || (!header && c == columns - 1)
                                      ? " (a separator at the end of every line? a table without a header "
                                        "must not end its lines with one)"
                                      : " (features must be numbers: fill it in, or leave the row out)"));
          }
          if (!v) {
            throw Error::in_file(path, fmt::format("line {}, column {}: '{}' is not a number{}", line.number,
                                                   c + 1, cell, maybe_the_labels(c)));
          }
          if (!std::isfinite(*v) || std::abs(*v) > 3.0e38) {
            throw Error::in_file(path, fmt::format("line {}, column {}: {} is not a finite float32 number",
                                                   line.number, c + 1, cell));
          }
          *row++ = static_cast<float>(*v);
        }
      }
    } catch (...) {
      run.error_line = number;
      run.error = std::current_exception();
    }
  };
  {
    std::vector<std::jthread> helpers;
    for (std::size_t t = 1; t < runs.size(); ++t)
      helpers.emplace_back([&, t] { parse_run(runs[t]); });
    parse_run(runs[0]);
  }
  const auto first_error = std::min_element(
      runs.begin(), runs.end(), [](const Run& a, const Run& b) { return a.error_line < b.error_line; });
  if (first_error->error) std::rethrow_exception(first_error->error);
  const bool numeric_labels =
      std::all_of(runs.begin(), runs.end(), [](const Run& run) { return run.numeric; });
  // Numbers with fractions in every label cell are a measurement, not classes (scikit-learn's "continuous"
  // target): most likely a feature column taken for the labels, which would make a class of each value.
  if (with_labels && std::all_of(runs.begin(), runs.end(), [](const Run& run) { return run.all_numbers; })) {
    const auto fractional =
        std::find_if(runs.begin(), runs.end(), [](const Run& r) { return !r.fraction.empty(); });
    if (fractional != runs.end()) {
      throw Error::in_file(
          path, fmt::format("line {}: the label {} (column {}{}) has a fraction: labels are classes, whole "
                            "numbers or names (--label-column NAME|INDEX says where the labels are)",
                            fractional->fraction_line, fractional->fraction, label_index + 1,
                            header ? fmt::format(", '{}'", first_row[label_index]) : std::string()));
    }
  }
  table.labels.is_text = with_labels && !numeric_labels;
  for (Run& run : runs) {
    if (!with_labels) break;
    if (numeric_labels) {
      table.labels.numbers.insert(table.labels.numbers.end(), run.numbers.begin(), run.numbers.end());
    } else {
      table.labels.text.insert(table.labels.text.end(), std::make_move_iterator(run.text.begin()),
                               std::make_move_iterator(run.text.end()));
    }
  }
  table.features.count = n;
  table.features.height = 1;
  table.features.width = D;
  table.features.kind = InputKind::kFeatures;
  table.features.element = ElementType::kF32;
  table.features.pixels = Bytes(std::move(values));
  return table;
}

// ---- Decoded copies of large tables ----
// A table of kCachedTableBytes or more is parsed once: its numbers, labels and feature names go to the
// decoded cache (idx_cache_folder) under the file's size, time and inode, and later runs map the numbers
// in place. An entry: four 64-bit counts (rows, features, text labels or not, feature names), the
// floats, the labels (64-bit numbers, or a 32-bit length and the bytes each), then the feature names, the
// label column's name and the notes likewise (a 64-bit count before the notes).
constexpr std::size_t kCachedTableBytes = 1 << 20;
constexpr std::array<char, 8> kCsvCacheMagic = {'S', 'R', 'C', 'S', 'V', 'C', '0', '6'};

void put_bytes(std::vector<std::uint8_t>& out, const void* data, std::size_t size) {
  const auto* p = static_cast<const std::uint8_t*>(data);
  out.insert(out.end(), p, p + size);
}

void put_strings(std::vector<std::uint8_t>& out, const std::vector<std::string>& strings) {
  for (const std::string& s : strings) {
    const auto size = static_cast<std::uint32_t>(s.size());
    put_bytes(out, &size, sizeof size);
    put_bytes(out, s.data(), s.size());
  }
}

std::vector<std::uint8_t> encode_table(const CsvTable& table) {
  const std::uint64_t counts[4] = {table.features.count, table.features.width, table.labels.is_text ? 1U : 0U,
                                   table.features.feature_names.size()};
  std::vector<std::uint8_t> out;
  put_bytes(out, counts, sizeof counts);
  put_bytes(out, table.features.pixels.data(), table.features.pixels.size());
  if (table.labels.is_text) {
    put_strings(out, table.labels.text);
  } else {
    put_bytes(out, table.labels.numbers.data(), table.labels.numbers.size() * sizeof(std::int64_t));
  }
  put_strings(out, table.features.feature_names);
  put_strings(out, {table.features.label_name});
  const std::uint64_t notes = table.notes.size();
  put_bytes(out, &notes, sizeof notes);
  put_strings(out, table.notes);
  return out;
}

// The table in an entry's bytes, or nullopt where they do not hold one (then the file is parsed).
std::optional<CsvTable> decode_table(const Bytes& bytes, bool with_labels) {
  std::size_t at = 0;
  const auto take = [&](void* out, std::size_t size) {
    if (size > bytes.size() - at) return false;
    std::memcpy(out, bytes.data() + at, size);
    at += size;
    return true;
  };
  const auto take_strings = [&](std::vector<std::string>& out, std::uint64_t count) {
    for (std::uint64_t i = 0; i < count; ++i) {
      std::uint32_t size = 0;
      if (!take(&size, sizeof size) || size > bytes.size() - at) return false;
      out.emplace_back(reinterpret_cast<const char*>(bytes.data() + at), size);
      at += size;
    }
    return true;
  };
  std::uint64_t counts[4] = {};
  if (!take(counts, sizeof counts)) return std::nullopt;
  const auto [n, D, is_text, names] = counts;
  const std::uint64_t most = bytes.size();  // no count can be larger than the entry
  if (n == 0 || D == 0 || n > most || D > most || n * D > most / sizeof(float) || names > most ||
      (is_text != 0 && !with_labels)) {
    return std::nullopt;
  }
  CsvTable table;
  table.features.count = n;
  table.features.height = 1;
  table.features.width = D;
  table.features.kind = InputKind::kFeatures;
  table.features.element = ElementType::kF32;
  const std::size_t float_bytes = n * D * sizeof(float);
  if (float_bytes > bytes.size() - at) return std::nullopt;
  table.features.pixels = bytes.subview(at, float_bytes);  // in place
  at += float_bytes;
  table.labels.is_text = is_text != 0;
  if (with_labels && table.labels.is_text) {
    if (!take_strings(table.labels.text, n)) return std::nullopt;
  } else if (with_labels) {
    table.labels.numbers.resize(n);
    if (!take(table.labels.numbers.data(), n * sizeof(std::int64_t))) return std::nullopt;
  }
  std::vector<std::string> label_name;
  std::uint64_t notes = 0;
  if (!take_strings(table.features.feature_names, names) || !take_strings(label_name, 1) ||
      !take(&notes, sizeof notes) || notes > most || !take_strings(table.notes, notes) || at != bytes.size())
    return std::nullopt;
  table.features.label_name = label_name[0];
  return table;
}

CsvTable read_csv_table(const fs::path& path, const std::string& label_column, bool with_labels, int threads,
                        const CsvNames& trained, const std::vector<std::string>& ignored = {}) {
  std::error_code ec;
  if (fs::is_regular_file(path, ec)) {  // read where it lies
    const std::shared_ptr<const MappedFile> mapped = map_file(path, MapPages::kOnFirstRead);
    const std::span<const std::uint8_t> bytes(mapped->data, mapped->size);
    // A gzip-compressed table (.csv.gz, as pandas reads them) is decompressed whole, so its decoded copy
    // is kept whatever its compressed size.
    const bool compressed = is_gzip(bytes);
    const fs::path folder = idx_cache_folder();
    const std::optional<CacheKey> key = !folder.empty() && (bytes.size() >= kCachedTableBytes || compressed)
                                            ? file_cache_key(path, kCsvCacheMagic)
                                            : std::nullopt;
    const fs::path entry =
        key ? decoded_cache_entry(
                  folder,
                  fmt::format("{}|{}|{}|{}|{}|{}", fs::absolute(path, ec).lexically_normal().string(),
                              label_column, with_labels ? "labels" : "features", trained.label,
                              fmt::join(trained.features, "\x1f"), fmt::join(ignored, "\x1f")),
                  "-" + path.filename().string() + ".csv")
            : fs::path();
    if (key) {
      if (std::optional<Bytes> cached = read_decoded_cache(entry, *key)) {
        if (std::optional<CsvTable> table = decode_table(*cached, with_labels)) return std::move(*table);
      }
    }
    const std::vector<std::uint8_t> decompressed =
        compressed ? gunzip(bytes, path.string()) : std::vector<std::uint8_t>();
    const std::string_view text =
        compressed ? std::string_view(reinterpret_cast<const char*>(decompressed.data()), decompressed.size())
                   : std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size());
    CsvTable table = read_csv_text(text, path, label_column, with_labels, threads, trained, ignored);
    if (key && text.size() >= kCachedTableBytes)
      write_decoded_cache(entry, *key, encode_table(table));  // only a table that parsed
    return table;
  }
  if (fs::is_directory(path, ec)) throw Error::in_file(path, "is a directory, expected a CSV file");
  std::ifstream in(path, std::ios::binary);  // a pipe (--train-csv <(xz -dc t.csv.xz)) is read whole
  if (!in) throw Error::in_file(path, "cannot be opened");
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) throw Error::in_file(path, "read error");
  const std::span<const std::uint8_t> bytes(reinterpret_cast<const std::uint8_t*>(text.view().data()),
                                            text.view().size());
  if (is_gzip(bytes)) {
    const std::vector<std::uint8_t> decompressed = gunzip(bytes, path.string());
    return read_csv_text({reinterpret_cast<const char*>(decompressed.data()), decompressed.size()}, path,
                         label_column, with_labels, threads, trained, ignored);
  }
  return read_csv_text(text.view(), path, label_column, with_labels, threads, trained, ignored);
}

}  // namespace

CsvTable parse_csv(std::string_view text, const std::string& source, const std::string& label_column,
                   int threads, const CsvNames& trained, const std::vector<std::string>& ignored) {
  return read_csv_text(text, source, label_column, /*with_labels=*/true, threads, trained, ignored);
}

CsvTable read_csv_file(const fs::path& path, const std::string& label_column, int threads,
                       const CsvNames& trained, const std::vector<std::string>& ignored) {
  return read_csv_table(path, label_column, /*with_labels=*/true, threads, trained, ignored);
}

std::vector<std::string> csv_first_cells(const fs::path& path) {
  // zlib reads a plain file as it is and a .csv.gz decompressed, in both only as far as the first line.
  const std::unique_ptr<gzFile_s, decltype(&gzclose)> file(gzopen(path.c_str(), "rb"), &gzclose);
  if (!file) throw Error::in_file(path, "cannot be opened");
  std::array<char, 4096> chunk;
  for (std::string line; gzgets(file.get(), chunk.data(), static_cast<int>(chunk.size())); line.clear()) {
    line += chunk.data();
    // A line longer than a chunk comes in several.
    while (!line.empty() && line.back() != '\n' &&
           gzgets(file.get(), chunk.data(), static_cast<int>(chunk.size())))
      line += chunk.data();
    const std::vector<CsvLine> lines = csv_lines(line);  // a byte-order mark dropped, blank lines skipped
    if (lines.empty()) continue;
    CsvLineSplitter splitter(cell_separator(lines[0].text));  // owns the cells it returns
    const std::vector<std::string_view>& cells = splitter.split(lines[0].text);
    return std::vector<std::string>(cells.begin(), cells.end());
  }
  throw Error::in_file(path, "is empty");
}

CsvTable read_csv_file_without_labels(const fs::path& path, const CsvNames& trained) {
  return read_csv_table(path, "", /*with_labels=*/false, /*threads=*/1, trained);
}

// ---- Labels --------------------------------------------------------------------------------------

void assign_labels(Dataset& train, const RawLabels& train_labels, const std::string& train_source,
                   Dataset& test, const RawLabels& test_labels, const std::string& test_source, int classes) {
  if (train_labels.is_text != test_labels.is_text) {
    throw Error::in_file(test_source, fmt::format("labels are {}, but the training labels are {}",
                                                  test_labels.is_text ? "text" : "numbers",
                                                  train_labels.is_text ? "text" : "numbers"));
  }
  struct Part {
    Dataset& set;
    const RawLabels& raw;
    const std::string& source;
  };
  const Part parts[2] = {{train, train_labels, train_source}, {test, test_labels, test_source}};
  for (const Part& part : parts) {
    if (part.raw.size() != part.set.count) {
      throw Error::in_file(part.source,
                           fmt::format("has {} labels for {} rows", part.raw.size(), part.set.count));
    }
  }
  std::vector<std::string> names;
  if (train_labels.is_text) {
    std::set<std::string> distinct(train_labels.text.begin(), train_labels.text.end());
    distinct.insert(test_labels.text.begin(), test_labels.text.end());
    names.assign(distinct.begin(), distinct.end());
    if (classes != 0 && static_cast<std::size_t>(classes) != names.size()) {
      throw Error::in_file(train_source, fmt::format("--classes {} given, but the labels name {} classes",
                                                     classes, names.size()));
    }
    classes = static_cast<int>(names.size());
  } else {
    std::int64_t largest = -1;
    for (const Part& part : parts) {
      for (std::size_t i = 0; i < part.raw.numbers.size(); ++i) {
        const std::int64_t v = part.raw.numbers[i];
        if (v < 0 || (classes != 0 && v >= classes) || v >= kMaxClasses) {
          throw Error::in_file(part.source,
                               fmt::format("label {} at index {} is out of range (expected 0 to {})", v, i,
                                           (classes != 0 ? classes : kMaxClasses) - 1));
        }
        largest = std::max(largest, v);
      }
    }
    if (classes == 0) classes = static_cast<int>(largest + 1);
  }
  if (classes < 2) {
    throw Error::in_file(train_source,
                         fmt::format("the labels name {} class{}; a classifier needs at least 2", classes,
                                     classes == 1 ? "" : "es"));
  }
  if (classes > kMaxClasses) {
    throw Error::in_file(train_source,
                         fmt::format("{} classes; at most {} are supported", classes, kMaxClasses));
  }
  for (const Part& part : parts) {
    part.set.labels.resize(part.raw.size());
    for (std::size_t i = 0; i < part.raw.size(); ++i) {
      part.set.labels[i] =
          part.raw.is_text
              ? static_cast<Label>(std::lower_bound(names.begin(), names.end(), part.raw.text[i]) -
                                   names.begin())
              : static_cast<Label>(part.raw.numbers[i]);
    }
    part.set.num_classes = classes;
    part.set.class_names = names;
  }
}

void assign_model_labels(Dataset& rows, const RawLabels& raw, const std::string& source,
                         const std::vector<std::string>& class_names, std::string_view whose) {
  if (raw.size() != rows.count) {
    throw Error::in_file(source, fmt::format("has {} labels for {} rows", raw.size(), rows.count));
  }
  const auto K = static_cast<std::int64_t>(class_names.size());
  rows.labels.resize(raw.size());
  for (std::size_t i = 0; i < raw.size(); ++i) {
    if (raw.is_text) {
      const auto at = std::find(class_names.begin(), class_names.end(), raw.text[i]);
      if (at == class_names.end()) {
        constexpr std::size_t kMostNamesListed = 20;
        throw Error::in_file(source, class_names.size() <= kMostNamesListed
                                         ? fmt::format("label '{}' at index {} is not one of {} classes ({})",
                                                       raw.text[i], i, whose, fmt::join(class_names, ", "))
                                         : fmt::format("label '{}' at index {} is not one of {} {} classes",
                                                       raw.text[i], i, whose, class_names.size()));
      }
      rows.labels[i] = static_cast<Label>(at - class_names.begin());
    } else {
      const std::int64_t v = raw.numbers[i];
      if (v < 0 || v >= K) {
        throw Error::in_file(source, fmt::format("label {} at index {} is out of range ({} classes "
                                                 "are 0 to {})",
                                                 v, i, whose, K - 1));
      }
      rows.labels[i] = static_cast<Label>(v);
    }
  }
  rows.num_classes = static_cast<int>(K);
  rows.class_names = class_names;
}

// ---- Everything together -------------------------------------------------------------------------

namespace {

// Fashion-MNIST's files as Debian and Zalando ship them: 60,000 + 10,000 28x28 images whose first
// training labels are these. MNIST and other IDX sets of the same shape have other labels.
bool looks_like_fashion_mnist(const Dataset& train, const Dataset& test) {
  static constexpr std::array<Label, 16> kFirstTrainLabels = {9, 0, 0, 3, 0, 2, 7, 2, 5, 5, 0, 9, 5, 5, 7, 9};
  return train.count == 60000 && test.count == 10000 && train.height == 28 && train.width == 28 &&
         train.num_classes == kFashionMnistClasses &&
         std::equal(kFirstTrainLabels.begin(), kFirstTrainLabels.end(), train.labels.begin());
}

// One name a line (blank lines at the end ignored); the count must match.
std::vector<std::string> read_class_names_file(const fs::path& path) {
  std::ifstream in(path);
  if (!in) throw Error::in_file(path, "cannot be opened");
  std::vector<std::string> names;
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    names.push_back(line);
  }
  while (!names.empty() && names.back().empty())
    names.pop_back();
  for (std::size_t i = 0; i < names.size(); ++i) {
    if (names[i].empty())
      throw Error::in_file(path, fmt::format("line {} is empty (one class name a line)", i + 1));
  }
  return names;
}

// Labels of a set loaded with the largest class count: the number of classes they name.
int classes_named(const Dataset& set) {
  int largest = -1;
  for (Label l : set.labels)
    largest = std::max<int>(largest, l);
  return largest + 1;
}

TrainTestData split_off_test(Dataset all, double fraction, std::uint64_t seed) {
  const std::vector<std::uint32_t> held = stratified_holdout_of_some(all, fraction, seed, "test");
  std::vector<std::uint32_t> kept;
  kept.reserve(all.count - held.size());
  std::size_t h = 0;
  for (std::uint32_t i = 0; i < all.count; ++i) {
    if (h < held.size() && held[h] == i) {
      ++h;
    } else {
      kept.push_back(i);
    }
  }
  return {subset(all, kept), subset(all, held)};
}

void check_same_features(const Dataset& train, const Dataset& test, const fs::path& test_source) {
  if (train.features() != test.features()) {
    throw Error::in_file(test_source, fmt::format("has {} features a row, but the training data has {}",
                                                  test.features(), train.features()));
  }
  if (train.element != test.element) {
    throw Error::in_file(test_source, fmt::format("holds {} values, but the training data holds {}",
                                                  element_name(test.element), element_name(train.element)));
  }
}

NpyArray npz_member(std::map<std::string, NpyArray>& arrays, std::initializer_list<const char*> names,
                    const fs::path& path, bool required) {
  for (const char* name : names) {
    if (auto it = arrays.find(name); it != arrays.end()) return it->second;
  }
  if (!required) return {};
  std::vector<std::string> present;
  for (const auto& [name, array] : arrays)
    present.push_back(name);
  const bool numbered = arrays.contains("arr_0");  // np.savez(f, X, y) names them arr_0, arr_1, ...
  throw Error::in_file(
      path,
      fmt::format("has no array named {} (it has: {}){}", fmt::join(names, " or "), fmt::join(present, ", "),
                  numbered ? "; name them: np.savez(f, x_train=X, y_train=y, ...)" : ""));
}

}  // namespace

DataFiles locate_idx_files(const DataSource& source) {
  if (!source.dataset.empty() && !source.data) return locate_dataset(known_dataset(source.dataset));
  return locate_data(source.data);
}

bool names_data(const DataSource& source) {
  return source.data || !source.dataset.empty() || source.uses_arrays() || source.uses_csv();
}

void apply_options(const DataSource& from, DataSource& to) {
  if (from.classes != 0) to.classes = from.classes;
  // The split's seed stays `to`'s: a model's own split drawn again is the one it was trained beside.
  if (from.test_fraction != 0) to.test_fraction = from.test_fraction;
  if (from.image_height != 0) {
    to.image_height = from.image_height;
    to.image_width = from.image_width;
  }
  to.skip_bad_images = to.skip_bad_images || from.skip_bad_images;
  if (!from.label_column.empty()) to.label_column = from.label_column;
  if (!from.ignore_columns.empty()) to.ignore_columns = from.ignore_columns;
  to.threads = from.threads;
}

void check_image_options_apply(const DataSource& source) {
  if (source.image_height == 0 && !source.skip_bad_images) return;
  std::string kind = source_kind(source);
  if (kind == "images") return;
  // Not ignored: the user meant some size, or thought there were images to pass over.
  std::transform(kind.begin(), kind.end(), kind.begin(), [](unsigned char c) { return std::toupper(c); });
  throw UsageError(fmt::format("{} applies to image folders only, not to {} data",
                               source.image_height != 0 ? "--image-size" : "--skip-bad-images", kind));
}

void read_images_at_model_size(int height, int width, DataSource& source) {
  if (height > 0 && width > 0 && source.image_height == 0 && source_kind(source) == "images") {
    source.image_height = height;
    source.image_width = width;
  }
}

std::string source_kind(const DataSource& source) {
  if (source.uses_arrays()) return "npy";
  if (source.uses_csv()) return "csv";
  if (source.data && source.data->extension() == ".npz") return "npz";
  if (source.data && is_image_folder(*source.data)) return "images";
  return "idx";
}

namespace {

// One part of a feature source (training, test or validation) as read: its rows and their raw labels,
// before the labels become classes.
struct RawPart {
  Dataset rows;
  RawLabels labels;
  std::string name;           // the label source, for messages; empty: the source has no such part
  fs::path file;              // the features or table, for records
  std::string features_name;  // the features, for messages
  bool given() const { return !name.empty(); }
};

// Feature rows of each part. No test part when it is not given (then --test-fraction makes one).
struct FeatureParts {
  RawPart train, test, validation;
  fs::path folder;        // what messages and records name: the .npz, or the training features or table
  std::string test_hint;  // how to give a test set
  std::vector<std::string> notes;  // the tables' notes (CsvTable)
};

// The features and labels of one part given as two .npy files; none when neither is given.
RawPart npy_part(const fs::path& features, const fs::path& labels) {
  if (features.empty()) return {};
  return {features_from_npy(read_npy_file(features), features.string()),
          labels_from_npy(read_npy_file(labels), labels.string()), labels.string(), features,
          features.string()};
}

FeatureParts read_npy_parts(const DataSource& source) {
  // Each flag of a pair needs the other (the training pair is required), checked before any file is read.
  const auto check_pair = [](const fs::path& features, const fs::path& labels, bool required,
                             const char* flags) {
    if (features.empty() != labels.empty() || (required && features.empty()))
      throw UsageError(fmt::format("{} (and the other way round)", flags));
  };
  check_pair(source.test_features, source.test_labels, false, "--test-features needs --test-labels");
  check_pair(source.val_features, source.val_labels, false, "--val-features needs --val-labels");
  if (source.train_features.empty() && source.train_labels.empty()) {  // only test or validation arrays
    throw UsageError(fmt::format("{} needs the training arrays, --train-features and --train-labels",
                                 source.test_features.empty() ? "--val-features" : "--test-features"));
  }
  check_pair(source.train_features, source.train_labels, true, "--train-features needs --train-labels");
  FeatureParts parts;
  parts.test_hint = "give --test-features and --test-labels";
  parts.folder = source.train_features;
  parts.train = npy_part(source.train_features, source.train_labels);
  parts.test = npy_part(source.test_features, source.test_labels);
  parts.validation = npy_part(source.val_features, source.val_labels);
  return parts;
}

FeatureParts read_npz_parts(const fs::path& path) {
  auto arrays = read_npz_file(path);
  FeatureParts parts;
  parts.test_hint = "add x_test and y_test to " + path.string();
  parts.folder = path;
  // A part's features and labels under the first of their names the archive has; its features absent,
  // so is the part (the training part's are required).
  const auto npz_part = [&](std::initializer_list<const char*> x_names,
                            std::initializer_list<const char*> y_names, bool required) {
    const auto where = [&](const char* what) { return fmt::format("{} ({})", path.string(), what); };
    const NpyArray x = npz_member(arrays, x_names, path, required);
    if (x.shape.empty()) return RawPart{};
    return RawPart{features_from_npy(x, where(*x_names.begin())),
                   labels_from_npy(npz_member(arrays, y_names, path, true), where(*y_names.begin())),
                   where(*y_names.begin()), path, where(*x_names.begin())};
  };
  // One set saved as np.savez(f, X=X, y=y) is the training set (then --test-fraction holds out a test set),
  // as is one of a linear probe's embeddings saved as (features, labels) or (embeddings, labels).
  parts.train = npz_part({"x_train", "X_train", "train_features", "X", "x", "features", "embeddings"},
                         {"y_train", "train_labels", "y", "labels", "targets"}, true);
  parts.test = npz_part({"x_test", "X_test", "test_features"}, {"y_test", "test_labels"}, false);
  parts.validation = npz_part({"x_val", "X_val", "val_features"}, {"y_val", "val_labels"}, false);
  return parts;
}

// A training table's label column whose value differs in every row is an id (Kaggle's tables start with
// one, and the labels are the first column by default) or a measurement, not classes: each class would
// have one example, and a held-out row never a class training saw. Refused from this many rows on (a
// table of a few rows may be a toy).
constexpr std::size_t kRowsForDistinctLabelCheck = 20;

void check_labels_repeat(const RawLabels& labels, const std::string& label_name,
                         const std::string& label_column, const fs::path& path) {
  const std::size_t n = labels.size();
  if (n < kRowsForDistinctLabelCheck) return;
  std::size_t distinct = 0;
  if (labels.is_text) {
    std::vector<std::string_view> values(labels.text.begin(), labels.text.end());
    std::sort(values.begin(), values.end());
    distinct = static_cast<std::size_t>(std::unique(values.begin(), values.end()) - values.begin());
  } else {
    std::vector<std::int64_t> values = labels.numbers;
    std::sort(values.begin(), values.end());
    distinct = static_cast<std::size_t>(std::unique(values.begin(), values.end()) - values.begin());
  }
  if (distinct < n) return;
  const std::string which = !label_name.empty()    ? fmt::format(" (column '{}')", label_name)
                            : label_column.empty() ? std::string(" (the first column, by default)")
                                                   : fmt::format(" (column {})", label_column);
  throw Error::in_file(path,
                       fmt::format("the labels{} differ in every one of the {} rows: an id, not classes "
                                   "(each class would have one example); --label-column NAME|INDEX says "
                                   "where the labels are",
                                   which, n));
}

FeatureParts read_csv_parts(const DataSource& source) {
  if (source.train_csv.empty()) {
    throw UsageError(source.val_csv.empty()    ? "--test-csv needs --train-csv"
                     : source.test_csv.empty() ? "--val-csv needs --train-csv"
                                               : "--test-csv and --val-csv need --train-csv");
  }
  FeatureParts parts;
  parts.test_hint = "give --test-csv";
  parts.folder = source.train_csv;
  // A part's table; the test and validation tables' columns matched to the training table's by name
  // where both have a header.
  const auto csv_part = [&](const fs::path& path, const CsvNames& trained,
                            const std::vector<std::string>& ignored = {}) {
    if (path.empty()) return RawPart{};
    CsvTable table = read_csv_file(path, source.label_column, source.threads, trained, ignored);
    parts.notes.insert(parts.notes.end(), table.notes.begin(), table.notes.end());
    return RawPart{std::move(table.features), std::move(table.labels), path.string(), path, path.string()};
  };
  parts.train = csv_part(source.train_csv, {}, source.ignore_columns);
  check_labels_repeat(parts.train.labels, parts.train.rows.label_name, source.label_column, source.train_csv);
  const CsvNames trained{parts.train.rows.label_name, parts.train.rows.feature_names};
  parts.test = csv_part(source.test_csv, trained);
  parts.validation = csv_part(source.val_csv, trained);
  return parts;
}

// A test set, or --test-fraction, but not both: the one place this is decided.
void check_test_choice(bool has_test, bool split, const std::string& test_set, const std::string& hint) {
  if (has_test && split) throw UsageError("--test-fraction does not apply: there is a test set, " + test_set);
  if (!has_test && !split) throw UsageError("no test set: " + hint + ", or --test-fraction F");
}

TrainTestData labelled_features(FeatureParts parts, const DataSource& source) {
  RawPart& train = parts.train;
  RawPart& test = parts.test;
  const bool split = source.test_fraction > 0, has_test = test.given();
  check_test_choice(has_test, split, test.name, parts.test_hint);
  if (train.rows.count == 0) throw Error::in_file(train.features_name, "has no rows");
  for (const RawPart* part : {&test, &parts.validation}) {
    if (part->given()) check_same_features(train.rows, part->rows, part->features_name);
  }
  test.rows.kind = train.rows.kind;  // an empty test part takes the training rows' shape
  test.rows.element = train.rows.element;
  test.rows.height = 1;
  test.rows.width = train.rows.width;
  if (!has_test) test.labels.is_text = train.labels.is_text;
  assign_labels(train.rows, train.labels, train.name, test.rows, test.labels,
                has_test ? test.name : train.name, source.classes);
  std::optional<Dataset> validation;
  if (parts.validation.given()) {
    // Labelled by the classes training found: a class the training set lacks is an error.
    validation = std::move(parts.validation.rows);
    if (validation->count == 0) throw Error::in_file(parts.validation.features_name, "has no rows");
    assign_model_labels(*validation, parts.validation.labels, parts.validation.name,
                        train.rows.class_names.empty() ? numbered_class_names(train.rows.num_classes)
                                                       : train.rows.class_names,
                        "the training set's");
  }
  TrainTestData data = split ? split_off_test(std::move(train.rows), source.test_fraction, source.seed)
                             : TrainTestData{std::move(train.rows), std::move(test.rows)};
  data.validation = std::move(validation);
  return data;
}

TrainTestData load_image_source(const DataSource& source, LoadedData& loaded) {
  ImageFolderOptions options;
  options.height = source.image_height;
  options.width = source.image_width;
  options.skip_bad_images = source.skip_bad_images;
  options.threads = source.threads;
  ImageFolderData images = load_image_folder(*source.data, options);
  loaded.skipped_images = images.skipped;
  loaded.folder = *source.data;
  if (source.classes != 0 && source.classes != images.train.num_classes) {
    throw Error::in_file(*source.data, fmt::format("--classes {} given, but there are {} class folders",
                                                   source.classes, images.train.num_classes));
  }
  std::error_code ec;
  const fs::path unlabelled = *source.data / "test";
  check_test_choice(images.test.has_value(), source.test_fraction > 0, images.test_folder.string(),
                    fs::is_directory(unlabelled, ec)
                        ? fmt::format("{} has no class folders (images without labels are for softreg "
                                      "predict); add {}/<class>/... or {}/val/<class>/...",
                                      unlabelled.string(), unlabelled.string(), source.data->string())
                        : fmt::format("add {}/test/<class>/...", source.data->string()));
  loaded.test_file = images.test_folder;
  loaded.validation_file = images.validation_folder;
  if (!images.test) return split_off_test(std::move(images.train), source.test_fraction, source.seed);
  return {std::move(images.train), std::move(*images.test), std::move(images.validation)};
}

TrainTestData load_idx_source(const DataSource& source, LoadedData& loaded) {
  if (source.test_fraction > 0) {
    throw UsageError("--test-fraction does not apply to IDX folders, which have a test set");
  }
  const DataFiles files = locate_idx_files(source);
  loaded.folder = files.folder;
  TrainTestData data = load_train_test(files, source.classes != 0 ? source.classes : kMaxClasses);
  const fs::path names_file = files.folder / "classes.txt";
  std::error_code ec;
  std::vector<std::string> names;
  if (fs::is_regular_file(names_file, ec)) names = read_class_names_file(names_file);
  int classes = source.classes;
  if (classes == 0) {
    classes = std::max(classes_named(data.train), classes_named(data.test));
    if (!names.empty()) {
      if (static_cast<int>(names.size()) < classes) {
        throw Error::in_file(names_file, fmt::format("names {} classes, but the labels go up to {}",
                                                     names.size(), classes - 1));
      }
      classes = static_cast<int>(names.size());
    }
  }
  if (!names.empty() && static_cast<int>(names.size()) != classes) {
    throw Error::in_file(names_file,
                         fmt::format("names {} classes, but --classes is {}", names.size(), classes));
  }
  if (classes < 2) throw Error::in_file(files.train_labels, "the labels name fewer than 2 classes");
  data.train.num_classes = data.test.num_classes = classes;
  loaded.seed_data = looks_like_fashion_mnist(data.train, data.test);
  if (names.empty() && loaded.seed_data) names = default_class_names(classes);
  data.train.class_names = data.test.class_names = names;
  return data;
}

}  // namespace

LoadedData load_data(const DataSource& source) {
  // The ranges of the source's numbers are checked here only; front ends pass them through.
  if (!(source.test_fraction == 0 || (source.test_fraction > 0 && source.test_fraction < 1))) {
    throw UsageError(fmt::format("--test-fraction must be in (0, 1), got {}", source.test_fraction));
  }
  if (source.classes < 0 || source.classes == 1 || source.classes > kMaxClasses) {
    throw UsageError(fmt::format("--classes must be between 2 and {}, got {}", kMaxClasses, source.classes));
  }
  LoadedData loaded;
  loaded.kind = source_kind(source);
  check_image_options_apply(source);
  if (loaded.kind == "images") {
    loaded.data = load_image_source(source, loaded);
  } else if (loaded.kind == "idx") {
    loaded.data = load_idx_source(source, loaded);
  } else {
    FeatureParts parts = loaded.kind == "npy"   ? read_npy_parts(source)
                         : loaded.kind == "npz" ? read_npz_parts(*source.data)
                                                : read_csv_parts(source);
    loaded.folder = parts.folder;
    loaded.test_file = parts.test.file;
    loaded.validation_file = parts.validation.file;
    loaded.notes = parts.notes;
    loaded.data = labelled_features(std::move(parts), source);
  }
  for (Dataset* set : {&loaded.data.train, &loaded.data.test}) {
    if (set->class_names.empty()) set->class_names = numbered_class_names(set->num_classes);
  }
  if (loaded.data.validation) loaded.data.validation->class_names = loaded.data.train.class_names;
  return loaded;
}

bool names_test_part_only(const DataSource& source) {
  return source.train_features.empty() && source.train_labels.empty() && source.train_csv.empty() &&
         (!source.test_features.empty() || !source.test_labels.empty() || !source.test_csv.empty());
}

LoadedData load_test_part(const DataSource& source, const std::vector<std::string>& class_names,
                          const CsvNames& trained) {
  if (!names_test_part_only(source)) throw Error("load_test_part: the source names training data");
  LoadedData loaded;
  loaded.kind = source_kind(source);
  RawLabels labels;
  fs::path labels_file;
  Dataset& rows = loaded.data.test;
  if (loaded.kind == "npy") {
    if (source.test_features.empty() || source.test_labels.empty()) {
      throw UsageError("--test-features needs --test-labels (and the other way round)");
    }
    rows = features_from_npy(read_npy_file(source.test_features), source.test_features.string());
    labels = labels_from_npy(read_npy_file(source.test_labels), source.test_labels.string());
    labels_file = source.test_labels;
    loaded.folder = loaded.test_file = source.test_features;
  } else {
    CsvTable table = read_csv_file(source.test_csv, source.label_column, source.threads, trained);
    rows = std::move(table.features);
    labels = std::move(table.labels);
    labels_file = loaded.folder = loaded.test_file = source.test_csv;
  }
  if (rows.count == 0) throw Error::in_file(loaded.folder, "has no rows");
  assign_model_labels(rows, labels, labels_file.string(), class_names);
  return loaded;
}

std::string source_to_json(const DataSource& s) {
  nlohmann::ordered_json j;
  j["kind"] = source_kind(s);
  if (!s.dataset.empty()) j["dataset"] = s.dataset;
  if (s.data) j["data"] = fs::absolute(*s.data).lexically_normal().string();
  const auto put = [&](const char* key, const fs::path& p) {
    if (!p.empty()) j[key] = fs::absolute(p).lexically_normal().string();
  };
  put("train_features", s.train_features);
  put("train_labels", s.train_labels);
  put("test_features", s.test_features);
  put("test_labels", s.test_labels);
  put("val_features", s.val_features);
  put("val_labels", s.val_labels);
  put("train_csv", s.train_csv);
  put("test_csv", s.test_csv);
  put("val_csv", s.val_csv);
  if (!s.label_column.empty()) j["label_column"] = s.label_column;
  if (!s.ignore_columns.empty()) j["ignore_columns"] = s.ignore_columns;
  if (s.classes != 0) j["classes"] = s.classes;
  if (s.test_fraction != 0) {
    j["test_fraction"] = s.test_fraction;
    j["seed"] = s.seed;
  }
  if (s.image_height != 0) {
    j["image_height"] = s.image_height;
    j["image_width"] = s.image_width;
  }
  if (s.skip_bad_images) j["skip_bad_images"] = true;
  return j.dump();
}

DataSource source_from_json(const std::string& text, const std::string& where) {
  DataSource s;
  try {
    const nlohmann::json j = nlohmann::json::parse(text);
    if (!j.is_object()) throw Error(where + ": the data source is not a JSON object");
    const auto path = [&](const char* key) {
      return j.contains(key) ? fs::path(j.at(key).get<std::string>()) : fs::path();
    };
    if (j.contains("data")) s.data = path("data");
    s.dataset = j.value("dataset", std::string());
    s.train_features = path("train_features");
    s.train_labels = path("train_labels");
    s.test_features = path("test_features");
    s.test_labels = path("test_labels");
    s.val_features = path("val_features");
    s.val_labels = path("val_labels");
    s.train_csv = path("train_csv");
    s.test_csv = path("test_csv");
    s.val_csv = path("val_csv");
    s.label_column = j.value("label_column", std::string());
    s.ignore_columns = j.value("ignore_columns", std::vector<std::string>());
    s.classes = j.value("classes", 0);
    s.test_fraction = j.value("test_fraction", 0.0);
    s.seed = j.value("seed", std::uint64_t{0});
    s.image_height = j.value("image_height", 0);
    s.image_width = j.value("image_width", 0);
    s.skip_bad_images = j.value("skip_bad_images", false);
  } catch (const nlohmann::json::exception& e) {
    throw Error(fmt::format("{}: the data source record is malformed ({})", where, e.what()));
  }
  return s;
}

}  // namespace softreg
