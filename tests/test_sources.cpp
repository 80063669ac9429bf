// The data sources besides IDX: NPY/NPZ, CSV, image folders, label mapping, and what each does with
// bad input. Every fixture is written by the test itself into a temporary folder.
#include <gtest/gtest.h>
#include <stb_image_write.h>
#include <zip.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <fstream>
#include <limits>
#include <random>

#include "softreg/error.hpp"
#include "softreg/idx.hpp"
#include "softreg/inference.hpp"
#include "softreg/sources.hpp"
#include "softreg/train.hpp"
#include "test_util.hpp"

namespace softreg {
namespace {

using test::TempDir;

// A version 1.0 .npy file: magic, header dict padded to a multiple of 64 bytes, then the data.
std::string npy_bytes(const std::string& descr, const std::vector<std::size_t>& shape,
                      const std::string& data, bool fortran = false) {
  std::string dims;
  for (std::size_t d : shape)
    dims += std::to_string(d) + ", ";
  if (shape.size() > 1) dims.resize(dims.size() - 2);
  std::string header = "{'descr': '" + descr + "', 'fortran_order': " + (fortran ? "True" : "False") +
                       ", 'shape': (" + dims + "), }";
  while ((10 + header.size() + 1) % 64 != 0)
    header += ' ';
  header += '\n';
  std::string out = "\x93NUMPY";
  out += '\x01';
  out += '\x00';
  out += static_cast<char>(header.size() & 0xff);
  out += static_cast<char>(header.size() >> 8);
  return out + header + data;
}

template <class T>
std::string raw(const std::vector<T>& values) {
  return std::string(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(T));
}

void write_text(const std::filesystem::path& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

// Three well separated classes of 2-D points, n per class: features, integer labels.
struct Blobs {
  std::vector<float> x;
  std::vector<std::int64_t> y;
};
Blobs blobs(std::size_t n, std::uint32_t seed) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> noise(0, 0.3f);
  Blobs b;
  const float centers[3][2] = {{0, 3}, {3, 0}, {-3, -3}};
  for (std::size_t i = 0; i < 3 * n; ++i) {
    const std::size_t k = i % 3;
    b.x.push_back(centers[k][0] + noise(gen));
    b.x.push_back(centers[k][1] + noise(gen));
    b.y.push_back(static_cast<std::int64_t>(k));
  }
  return b;
}

void write_blob_npys(const TempDir& dir) {
  const Blobs train = blobs(100, 1), test = blobs(30, 2);
  write_text(dir / "xtr.npy", npy_bytes("<f4", {300, 2}, raw(train.x)));
  write_text(dir / "ytr.npy", npy_bytes("<i8", {300}, raw(train.y)));
  write_text(dir / "xte.npy", npy_bytes("<f4", {90, 2}, raw(test.x)));
  write_text(dir / "yte.npy", npy_bytes("<i8", {90}, raw(test.y)));
}

DataSource npy_source(const TempDir& dir) {
  DataSource s;
  s.train_features = dir / "xtr.npy";
  s.train_labels = dir / "ytr.npy";
  s.test_features = dir / "xte.npy";
  s.test_labels = dir / "yte.npy";
  return s;
}

template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(Npy, ParsesHeaderShapeAndDataInPlace) {
  TempDir dir;
  write_blob_npys(dir);
  const NpyArray a = read_npy_file(dir / "xtr.npy");
  EXPECT_EQ(a.descr, "<f4");
  EXPECT_EQ(a.shape, (std::vector<std::size_t>{300, 2}));
  EXPECT_TRUE(a.data.is_view());  // memory-mapped, not copied
  const Dataset d = features_from_npy(a, "xtr.npy");
  EXPECT_EQ(d.count, 300u);
  EXPECT_EQ(d.features(), 2u);
  EXPECT_EQ(d.element, ElementType::kF32);
  EXPECT_TRUE(d.pixels.is_view());
  EXPECT_FLOAT_EQ(d.value(0, 1), blobs(100, 1).x[1]);
}

TEST(Npy, Float64IsConvertedAndUint8ScaledLikePixels) {
  TempDir dir;
  write_text(dir / "f8.npy", npy_bytes("<f8", {1, 3}, raw(std::vector<double>{0.5, -2.0, 1e10})));
  const Dataset d = features_from_npy(read_npy_file(dir / "f8.npy"), "f8");
  EXPECT_EQ(d.element, ElementType::kF32);
  EXPECT_FLOAT_EQ(d.value(0, 1), -2.0f);
  write_text(dir / "u1.npy", npy_bytes("|u1", {2, 2}, raw(std::vector<std::uint8_t>{0, 51, 255, 3})));
  const Dataset u = features_from_npy(read_npy_file(dir / "u1.npy"), "u1");
  EXPECT_EQ(u.element, ElementType::kU8);
  EXPECT_FLOAT_EQ(u.value(0, 1), 51.0f / 255.0f);
}

// Each value's bytes in the other order, as numpy writes astype('>f4') (or any array on a big-endian
// machine).
template <class T>
std::string raw_big_endian(const std::vector<T>& values) {
  std::string out = raw(values);
  for (std::size_t i = 0; i < out.size(); i += sizeof(T))
    std::reverse(out.begin() + static_cast<std::ptrdiff_t>(i),
                 out.begin() + static_cast<std::ptrdiff_t>(i + sizeof(T)));
  return out;
}

// A 1 x 2 array of dtype `descr` with `body` as its data, read as features: converted to float32.
std::vector<float> one_row_of_two_as_float32(const TempDir& dir, const std::string& descr,
                                             const std::string& body) {
  write_text(dir / "x.npy", npy_bytes(descr, {1, 2}, body));
  const Dataset d = features_from_npy(read_npy_file(dir / "x.npy"), "x");
  EXPECT_EQ(d.element, ElementType::kF32) << descr;
  return std::vector<float>{d.value(0, 0), d.value(0, 1)};
}

TEST(Npy, BigEndianArraysAreReadInTheirByteOrder) {
  TempDir dir;
  const auto features = [&](const std::string& descr, const std::string& body) {
    return one_row_of_two_as_float32(dir, descr, body);
  };
  EXPECT_EQ(features(">f4", raw_big_endian(std::vector<float>{-1.25F, 3e7F})),
            (std::vector<float>{-1.25F, 3e7F}));
  EXPECT_EQ(features(">f8", raw_big_endian(std::vector<double>{0.5, -2.0})),
            (std::vector<float>{0.5F, -2.0F}));
  EXPECT_EQ(features(">f2", raw_big_endian(std::vector<std::uint16_t>{0xC100, 0x0001})),
            (std::vector<float>{-2.5F, std::ldexp(1.0F, -24)}));
  EXPECT_EQ(features(">i2", raw_big_endian(std::vector<std::int16_t>{-300, 7})),
            (std::vector<float>{-300, 7}));
  // Bytes have no order: '>u1' is pixels, as '|u1' is.
  write_text(dir / "u1.npy", npy_bytes(">u1", {1, 2}, raw(std::vector<std::uint8_t>{51, 255})));
  const Dataset pixels = features_from_npy(read_npy_file(dir / "u1.npy"), "u1");
  EXPECT_EQ(pixels.element, ElementType::kU8);
  EXPECT_FLOAT_EQ(pixels.value(0, 0), 51.0f / 255.0f);
  // A big-endian NaN is found as such.
  write_text(dir / "nan.npy",
             npy_bytes(">f4", {1, 2},
                       raw_big_endian(std::vector<float>{1, std::numeric_limits<float>::quiet_NaN()})));
  EXPECT_NE(
      error_of([&] { features_from_npy(read_npy_file(dir / "nan.npy"), "nan"); }).find("column 1 is NaN"),
      std::string::npos);

  write_text(dir / "y.npy", npy_bytes(">i4", {3}, raw_big_endian(std::vector<std::int32_t>{2, 0, 70000})));
  EXPECT_EQ(labels_from_npy(read_npy_file(dir / "y.npy"), "y").numbers,
            (std::vector<std::int64_t>{2, 0, 70000}));
  write_text(dir / "y8.npy", npy_bytes(">u8", {2}, raw_big_endian(std::vector<std::uint64_t>{1, 9})));
  EXPECT_EQ(labels_from_npy(read_npy_file(dir / "y8.npy"), "y8").numbers, (std::vector<std::int64_t>{1, 9}));
  // Text labels: UTF-32 code units in big-endian order ('>U2').
  write_text(dir / "yu.npy",
             npy_bytes(">U2", {2}, raw_big_endian(std::vector<std::uint32_t>{'o', 'k', 0xE9, 0})));
  EXPECT_EQ(labels_from_npy(read_npy_file(dir / "yu.npy"), "yu").text,
            (std::vector<std::string>{"ok", "\xC3\xA9"}));
}

TEST(Npy, OtherNumbersAreConvertedOnceToFloat32AndWholeFloatLabelsAccepted) {
  TempDir dir;
  const auto features = [&](const std::string& descr, const std::string& body) {
    return one_row_of_two_as_float32(dir, descr, body);
  };
  // float16: -2.5 (0xC100) and the smallest subnormal, 2^-24 (0x0001).
  EXPECT_EQ(features("<f2", raw(std::vector<std::uint16_t>{0xC100, 0x0001})),
            (std::vector<float>{-2.5F, std::ldexp(1.0F, -24)}));
  EXPECT_EQ(features("<i4", raw(std::vector<std::int32_t>{-3, 70000})), (std::vector<float>{-3, 70000}));
  EXPECT_EQ(features("|i1", raw(std::vector<std::int8_t>{-128, 127})), (std::vector<float>{-128, 127}));
  EXPECT_EQ(features("<u2", raw(std::vector<std::uint16_t>{65535, 0})), (std::vector<float>{65535, 0}));
  EXPECT_EQ(features("<i8", raw(std::vector<std::int64_t>{-(1LL << 40), 5})),
            (std::vector<float>{-0x1p40F, 5}));
  EXPECT_EQ(features("|b1", raw(std::vector<std::uint8_t>{1, 0})), (std::vector<float>{1, 0}));
  write_text(dir / "inf.npy", npy_bytes("<f2", {1, 1}, raw(std::vector<std::uint16_t>{0x7C00})));
  EXPECT_NE(error_of([&] { features_from_npy(read_npy_file(dir / "inf.npy"), "inf"); }).find("is infinite"),
            std::string::npos);
  // Labels kept as floats (pandas, scikit-learn), whole numbers.
  write_text(dir / "y.npy", npy_bytes("<f8", {3}, raw(std::vector<double>{2, 0, 1})));
  EXPECT_EQ(labels_from_npy(read_npy_file(dir / "y.npy"), "y").numbers, (std::vector<std::int64_t>{2, 0, 1}));
}

TEST(Npy, BadFilesGiveClearErrors) {
  TempDir dir;
  const std::string body = raw(std::vector<float>{1, 2, 3, 4});
  const auto fails_with = [&](const std::string& name, const std::string& bytes, bool as_labels = false) {
    write_text(dir / name, bytes);
    return error_of([&] {
      const NpyArray a = read_npy_file(dir / name);
      if (as_labels) {
        labels_from_npy(a, name);
      } else {
        features_from_npy(a, name);
      }
    });
  };
  EXPECT_NE(fails_with("fortran.npy", npy_bytes("<f4", {2, 2}, body, true)).find("Fortran order"),
            std::string::npos);
  EXPECT_NE(fails_with("truncated.npy", npy_bytes("<f4", {2, 2}, body.substr(0, 10))).find("truncated"),
            std::string::npos);
  EXPECT_NE(fails_with("lies.npy", npy_bytes("<f4", {3, 2}, body)).find("header says 6 elements"),
            std::string::npos);
  EXPECT_NE(fails_with("extra.npy", npy_bytes("<f4", {1, 2}, body)).find("header says 2 elements"),
            std::string::npos);
  EXPECT_NE(fails_with("dtype.npy", npy_bytes("<c8", {2, 1}, body)).find("'<c8' is not supported"),
            std::string::npos);
  EXPECT_NE(fails_with("bytes.npy", npy_bytes("|S4", {2, 2}, body)).find("features of dtype '|S4'"),
            std::string::npos);
  EXPECT_NE(fails_with("objects.npy", npy_bytes("|O", {2}, body.substr(0, 16))).find("Python objects"),
            std::string::npos);
  EXPECT_NE(
      fails_with("3d.npy", npy_bytes("<f4", {1, 2, 2}, body))
          .find("2-D array (rows x features), but it has shape (1, 2, 2): for images, X.reshape(len(X), -1)"),
      std::string::npos);
  EXPECT_EQ(fails_with("1d.npy", npy_bytes("<f4", {4}, body)).find("reshape"), std::string::npos);
  EXPECT_NE(
      fails_with("magic.npy", std::string("PK\x03\x04 not npy"))
          .find(
              "not a NumPy .npy file (no \\x93NUMPY magic); it is a zip archive (an .npz, or a PyTorch .pt"),
      std::string::npos);
  EXPECT_NE(fails_with("text.npy", "a,b\n1,2\n").find("; it is text (a CSV table?)"), std::string::npos);
  EXPECT_NE(fails_with("empty.npy", "").find("; it is empty"), std::string::npos);
  EXPECT_NE(fails_with("short.npy", "\x93NUMPY\x01").find("truncated in its header"), std::string::npos);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  EXPECT_NE(fails_with("nan.npy", npy_bytes("<f4", {2, 2}, raw(std::vector<float>{1, 2, nan, 4})))
                .find("row 1, column 0 is NaN"),
            std::string::npos);
  EXPECT_NE(fails_with("inf.npy", npy_bytes("<f8", {1, 2}, raw(std::vector<double>{1, INFINITY})))
                .find("row 0, column 1 is infinite"),
            std::string::npos);
  EXPECT_NE(fails_with("labels2d.npy", npy_bytes("<i4", {2, 2}, body), true)
                .find("1-D array, but it has shape (2, 2): one-hot rows? y.argmax(axis=1)"),
            std::string::npos);
  EXPECT_NE(fails_with("labelsf.npy", npy_bytes("<f4", {2}, raw(std::vector<float>{0, 1.5F})), true)
                .find("label 1.5 at index 1 is not a whole number"),
            std::string::npos);
  EXPECT_NE(fails_with("labelsq.npy", npy_bytes("<f16", {1}, body), true).find("labels of dtype '<f16'"),
            std::string::npos);
  // A mangled header of any kind is an Error, never a crash.
  const std::string good = npy_bytes("<f4", {2, 2}, body);
  for (std::size_t cut = 0; cut < 80; ++cut) {
    write_text(dir / "cut.npy", good.substr(0, cut));
    EXPECT_THROW(features_from_npy(read_npy_file(dir / "cut.npy"), "cut"), Error) << cut;
  }
}

TEST(Labels, TextLabelsBecomeSortedClassesAndNumbersAreChecked) {
  TempDir dir;
  // Strings: '<U3' is UTF-32, three code points an element.
  const std::u32string text = U"dogcatant";
  write_text(dir / "s.npy", npy_bytes("<U3", {3}, raw(std::vector<char32_t>(text.begin(), text.end()))));
  const RawLabels labels = labels_from_npy(read_npy_file(dir / "s.npy"), "s");
  ASSERT_TRUE(labels.is_text);
  EXPECT_EQ(labels.text, (std::vector<std::string>{"dog", "cat", "ant"}));
  Dataset train, test;
  train.count = 3;
  test.count = 1;
  RawLabels test_labels;
  test_labels.is_text = true;
  test_labels.text = {"eel"};
  assign_labels(train, labels, "train", test, test_labels, "test", 0);
  EXPECT_EQ(train.class_names, (std::vector<std::string>{"ant", "cat", "dog", "eel"}));
  EXPECT_EQ(train.labels, (std::vector<Label>{2, 1, 0}));
  EXPECT_EQ(test.labels, (std::vector<Label>{3}));

  RawLabels numbers, more;
  numbers.numbers = {0, 4, 2};
  more.numbers = {1};
  assign_labels(train, numbers, "train", test, more, "test", 0);
  EXPECT_EQ(train.num_classes, 5);  // the largest label + 1
  EXPECT_NE(error_of([&] {
              assign_labels(train, numbers, "train", test, more, "test", 3);
            }).find("train: label 4 at index 1 is out of range (expected 0 to 2)"),
            std::string::npos);
  numbers.numbers = {0, -1, 1};
  EXPECT_NE(error_of([&] { assign_labels(train, numbers, "train", test, more, "test", 0); }).find("label -1"),
            std::string::npos);
  numbers.numbers = {0, 0};
  EXPECT_NE(error_of([&] {
              assign_labels(train, numbers, "train", test, more, "test", 0);
            }).find("has 2 labels for 3 rows"),
            std::string::npos);
}

TEST(Sources, NpyFilesTrainAndEvaluateLikeAnyOtherData) {
  TempDir dir;
  write_blob_npys(dir);
  const LoadedData loaded = load_data(npy_source(dir));
  EXPECT_EQ(loaded.kind, "npy");
  EXPECT_EQ(loaded.data.train.num_classes, 3);
  EXPECT_EQ(loaded.data.train.kind, InputKind::kFeatures);
  EXPECT_EQ(loaded.folder, dir / "xtr.npy");  // named by its files, not by the folder they share
  EXPECT_EQ(loaded.test_file, dir / "xte.npy");
  TrainConfig config;
  config.batch_size = 32;
  Trainer trainer(config, loaded.data.train, loaded.data.test);
  EpochMetrics last;
  for (int e = 0; e < 5; ++e)
    last = *trainer.run_epoch();
  EXPECT_GT(last.test_acc, 0.99);

  // Feature-count and dtype mismatches name the test file.
  write_text(dir / "xte.npy", npy_bytes("<f4", {30, 3}, raw(std::vector<float>(90, 1.0f))));
  EXPECT_NE(error_of([&] {
              load_data(npy_source(dir));
            }).find("xte.npy: has 3 features a row, but the training data has 2"),
            std::string::npos);
  DataSource no_test = npy_source(dir);
  no_test.test_features.clear();
  no_test.test_labels.clear();
  EXPECT_THROW(load_data(no_test), UsageError);
  no_test.test_fraction = 0.2;
  const LoadedData split = load_data(no_test);
  EXPECT_TRUE(split.test_file.empty());
  EXPECT_EQ(split.data.test.count, 60u);  // 20 of each class's 100
  EXPECT_EQ(split.data.train.count, 240u);
  // Each class gives its share rounded: a fraction that gives no row, or every row, is an error.
  no_test.test_fraction = 0.001;
  EXPECT_NE(error_of([&] {
              load_data(no_test);
            }).find("a test fraction of 0.001 holds out none of the 300 training examples"),
            std::string::npos);
  no_test.test_fraction = 0.999;
  EXPECT_NE(error_of([&] {
              load_data(no_test);
            }).find("a test fraction of 0.999 holds out all 300 training examples"),
            std::string::npos);
}

TEST(Sources, NpzHoldsAllFourArrays) {
  TempDir dir;
  const Blobs train = blobs(20, 3), test = blobs(5, 4);
  const std::string arrays[4] = {npy_bytes("<f4", {60, 2}, raw(train.x)),
                                 npy_bytes("<i8", {60}, raw(train.y)), npy_bytes("<f4", {15, 2}, raw(test.x)),
                                 npy_bytes("<i8", {15}, raw(test.y))};
  const char* names[4] = {"x_train.npy", "y_train.npy", "x_test.npy", "y_test.npy"};
  int error = 0;
  zip_t* z = zip_open((dir / "d.npz").c_str(), ZIP_CREATE | ZIP_TRUNCATE, &error);
  ASSERT_NE(z, nullptr);
  for (int i = 0; i < 4; ++i) {
    zip_source_t* src = zip_source_buffer(z, arrays[i].data(), arrays[i].size(), 0);
    ASSERT_GE(zip_file_add(z, names[i], src, ZIP_FL_OVERWRITE), 0);
  }
  ASSERT_EQ(zip_close(z), 0);
  DataSource s;
  s.data = dir / "d.npz";
  const LoadedData loaded = load_data(s);
  EXPECT_EQ(loaded.kind, "npz");
  EXPECT_EQ(loaded.data.train.count, 60u);
  EXPECT_EQ(loaded.data.test.count, 15u);
  EXPECT_EQ(loaded.data.test.labels[4], 1);
  // One set saved as np.savez(f, X=X, y=y): the training set, split by --test-fraction; numbered arrays
  // (np.savez(f, X, y)) are an error that says to name them.
  const auto write_npz = [&](const char* file, std::vector<const char*> npz_names) {
    zip_t* one = zip_open((dir / file).c_str(), ZIP_CREATE | ZIP_TRUNCATE, &error);
    ASSERT_NE(one, nullptr);
    for (std::size_t i = 0; i < npz_names.size(); ++i) {
      zip_source_t* src = zip_source_buffer(one, arrays[i].data(), arrays[i].size(), 0);
      ASSERT_GE(zip_file_add(one, npz_names[i], src, ZIP_FL_OVERWRITE), 0);
    }
    ASSERT_EQ(zip_close(one), 0);
  };
  write_npz("xy.npz", {"X.npy", "y.npy"});
  s.data = dir / "xy.npz";
  s.test_fraction = 0.25;
  EXPECT_EQ(load_data(s).data.train.count + load_data(s).data.test.count, 60u);
  // A linear probe's embeddings and labels, under those names.
  write_npz("probe.npz", {"embeddings.npy", "labels.npy"});
  s.data = dir / "probe.npz";
  EXPECT_EQ(load_data(s).data.train.count + load_data(s).data.test.count, 60u);
  write_npz("val.npz", {"x_train.npy", "y_train.npy", "x_val.npy", "y_val.npy"});
  s.data = dir / "val.npz";
  const LoadedData with_val = load_data(s);
  ASSERT_TRUE(with_val.data.validation.has_value());
  EXPECT_EQ(with_val.data.validation->count, 15U);
  EXPECT_EQ(with_val.validation_file, dir / "val.npz");
  write_npz("numbered.npz", {"arr_0.npy", "arr_1.npy"});
  s.data = dir / "numbered.npz";
  EXPECT_NE(error_of([&] { load_data(s); }).find("name them: np.savez(f, x_train=X"), std::string::npos);
  write_text(dir / "bad.npz", "PK\x03\x04 this is not a zip");
  s.data = dir / "bad.npz";
  EXPECT_NE(error_of([&] { load_data(s); }).find("bad.npz: not a readable .npz"), std::string::npos);
}

TEST(Csv, HeaderLabelColumnAndTextLabels) {
  TempDir dir;
  write_text(dir / "t.csv", "x,kind,y\n1.5,cat,2\n-1,dog,0.25\n3,cat,1e-3\n");
  const CsvTable t = read_csv_file(dir / "t.csv", "kind");
  EXPECT_EQ(t.features.feature_names, (std::vector<std::string>{"x", "y"}));
  EXPECT_EQ(t.features.count, 3u);
  EXPECT_FLOAT_EQ(t.features.value(1, 1), 0.25f);
  EXPECT_EQ(t.labels.text, (std::vector<std::string>{"cat", "dog", "cat"}));
  write_text(dir / "n.csv", "2,0.5,1\n0,1,1\n");  // no header, label first
  const CsvTable n = read_csv_file(dir / "n.csv", "");
  EXPECT_TRUE(n.features.feature_names.empty());
  EXPECT_EQ(n.labels.numbers, (std::vector<std::int64_t>{2, 0}));
  EXPECT_EQ(read_csv_file(dir / "n.csv", "2").labels.numbers, (std::vector<std::int64_t>{1, 1}));
  // From the end, as Python counts: -1 is the last column.
  EXPECT_EQ(read_csv_file(dir / "n.csv", "-1").labels.numbers, (std::vector<std::int64_t>{1, 1}));
  EXPECT_EQ(read_csv_file(dir / "n.csv", "-3").labels.numbers, (std::vector<std::int64_t>{2, 0}));
  EXPECT_NE(error_of([&] {
              read_csv_file(dir / "n.csv", "-4");
            }).find("--label-column -4 is out of range (3 columns)"),
            std::string::npos);
}

TEST(Csv, TabsOrSemicolonsSeparateCellsWhereTheFirstLineHasNoComma) {
  TempDir dir;
  write_text(dir / "t.tsv", "kind\tx\ty\ncat\t1.5\t2\ndog\t-1\t0.25\n");
  const CsvTable tabs = read_csv_file(dir / "t.tsv", "");
  EXPECT_EQ(tabs.features.feature_names, (std::vector<std::string>{"x", "y"}));
  EXPECT_FLOAT_EQ(tabs.features.value(1, 1), 0.25f);
  EXPECT_EQ(tabs.labels.text, (std::vector<std::string>{"cat", "dog"}));
  EXPECT_EQ(csv_first_cells(dir / "t.tsv"), (std::vector<std::string>{"kind", "x", "y"}));
  // A spreadsheet's CSV where the decimal mark is a comma: semicolons between cells.
  write_text(dir / "s.csv", "kind;x;y\ncat;1,5;2\ndog;\"-1,0\";0,25\n");
  const CsvTable semicolons = read_csv_file(dir / "s.csv", "");
  EXPECT_EQ(semicolons.features.feature_names, (std::vector<std::string>{"x", "y"}));
  EXPECT_FLOAT_EQ(semicolons.features.value(0, 0), 1.5f);
  EXPECT_FLOAT_EQ(semicolons.features.value(1, 0), -1.0f);
  EXPECT_FLOAT_EQ(semicolons.features.value(1, 1), 0.25f);
  EXPECT_EQ(semicolons.labels.text, (std::vector<std::string>{"cat", "dog"}));
  // A comma in the first line outside quotes makes the table comma-separated, whatever else it has.
  write_text(dir / "c.csv", "\"a;b\",x\n1,2\n0,3\n");
  const CsvTable commas = read_csv_file(dir / "c.csv", "");
  EXPECT_EQ(commas.features.feature_names, (std::vector<std::string>{"x"}));
  EXPECT_EQ(commas.labels.numbers, (std::vector<std::int64_t>{1, 0}));
  // A decimal comma is a number only where semicolons separate the cells.
  write_text(dir / "bad.csv", "y,a\n1,\"0,5\"\n");
  EXPECT_NE(error_of([&] { read_csv_file(dir / "bad.csv", ""); }).find("'0,5' is not a number"),
            std::string::npos);
}

TEST(Csv, AQuotedCellMayHoldLineBreaks) {
  TempDir dir;
  // A spreadsheet's note of two lines (RFC 4180), in a column the model does not read, and a quoted
  // label with a comma and a line break.
  write_text(
      dir / "notes.csv",
      "kind,x,note,y\r\n\"cat, tabby\",1,\"first line\r\nsecond line\",2\r\ndog,3,\"\"\"quoted\"\"\",4\r\n");
  const CsvTable t = read_csv_file(dir / "notes.csv", "", 1, {"", {"x", "y"}});
  EXPECT_EQ(t.features.count, 2U);
  EXPECT_EQ(t.labels.text, (std::vector<std::string>{"cat, tabby", "dog"}));
  EXPECT_EQ(t.features.value(1, 1), 4.0F);
  // Errors name the line a row starts on, counting the breaks inside quotes.
  write_text(dir / "bad.csv", "kind,x,note\ncat,1,\"a\nb\nc\"\ndog,oops,n\n");
  EXPECT_NE(error_of([&] {
              read_csv_file(dir / "bad.csv", "", 1, {"", {"x"}});
            }).find("line 5, column 2: 'oops' is not a number"),
            std::string::npos);
  // A quote never closed takes the rest of the file into its row: an error, not a hang.
  write_text(dir / "open.csv", "kind,x\ncat,\"1\ndog,2\n");
  EXPECT_THROW(read_csv_file(dir / "open.csv", ""), Error);
}

TEST(Csv, BadTablesNameTheLineAndColumn) {
  TempDir dir;
  const auto fails_with = [&](const std::string& text, const std::string& column = "") {
    write_text(dir / "bad.csv", text);
    return error_of([&] { read_csv_file(dir / "bad.csv", column); });
  };
  EXPECT_NE(fails_with("y,a,b\n1,2,3\n0,5\n").find("line 3 has 2 cells, but the first line has 3"),
            std::string::npos);
  EXPECT_NE(fails_with("y,a,b\n1,2,3\n0,5,x7\n").find("line 3, column 3: 'x7' is not a number"),
            std::string::npos);
  EXPECT_NE(fails_with("y,a\n1,nan\n").find("line 2, column 2: nan is not a finite"), std::string::npos);
  EXPECT_NE(fails_with("y,a,b\n1,2,3\n0,,4\n")
                .find("line 3, column 2: the cell is empty (features must be numbers"),
            std::string::npos);
  // A separator ending every line: a header's unnamed last column holding a value is named; without a
  // header the empty last cells are an error that says what they may be.
  EXPECT_NE(fails_with("y,a,b,\n1,2,3,\n0,4,5,6\n")
                .find("line 3, column 4: '6' is in a column the first line leaves unnamed: name it there"),
            std::string::npos);
  EXPECT_NE(fails_with("1,2,3,\n0,4,5,\n")
                .find("line 1, column 4: the cell is empty (a separator at the end of every line?"),
            std::string::npos);
  // A first row of data with a value missing is data, not a header: its line is named.
  EXPECT_NE(fails_with("1,,3\n0,4,5\n").find("line 1, column 2: the cell is empty (features must be numbers"),
            std::string::npos);
  EXPECT_NE(fails_with(",2,3\n0,4,5\n").find("line 1: the label is missing"), std::string::npos);
  EXPECT_NE(fails_with("y,a\n1,1e999\n").find("not a number"), std::string::npos);  // out of range
  EXPECT_NE(fails_with("y,a\n,1\n").find("line 2: the label is missing"), std::string::npos);
  EXPECT_NE(fails_with("y,a\n1,2\n", "label").find("the label column 'label' is not in the first line"),
            std::string::npos);
  EXPECT_NE(fails_with("").find("is empty"), std::string::npos);
  EXPECT_NE(fails_with("y,a\n").find("header but no rows"), std::string::npos);
  // Numbers with fractions in every label cell: a feature column taken for the labels, not classes.
  EXPECT_NE(fails_with("a,y\n0.25,1\n2,0\n", "0")
                .find("line 2: the label 0.25 (column 1, 'a') has a fraction: labels are classes"),
            std::string::npos);
  EXPECT_NE(fails_with("1,0.5\n2.0,1\n", "1").find("line 1: the label 0.5 (column 2) has a fraction"),
            std::string::npos);
  write_text(dir / "names.csv", "y,a\ncat,1\n2.5,2\n1.0,3\n");  // names (and 2.5 among them): text classes
  EXPECT_EQ(read_csv_file(dir / "names.csv", "").labels.text,
            (std::vector<std::string>{"cat", "2.5", "1.0"}));
}

// Columns a header names twice or leaves unnamed get pandas' names, so that a test table with the same
// header is matched column for column (both "x" columns were read from the first).
TEST(Csv, ColumnsNamedTwiceOrUnnamedGetPandasNames) {
  const CsvTable train = parse_csv("y,x,x,x\n0,1,9,5\n1,2,8,5\n", "train.csv", "y");
  EXPECT_EQ(train.features.feature_names, (std::vector<std::string>{"x", "x.1", "x.2"}));
  const CsvTable test = parse_csv("x,y,x,x\n1,0,100,7\n2,1,200,7\n", "test.csv", "", 1,
                                  {train.features.label_name, train.features.feature_names});
  EXPECT_EQ(
      (std::vector<float>{test.features.value(0, 0), test.features.value(0, 1), test.features.value(0, 2)}),
      (std::vector<float>{1, 100, 7}));
  const CsvTable gaps = parse_csv("y,a,,b\n0,1,2,3\n", "t.csv", "y");
  EXPECT_EQ(gaps.features.feature_names, (std::vector<std::string>{"a", "Unnamed: 2", "b"}));
}

// A separator at the end of every line of a table with a header (some exports write one) makes an
// unnamed, empty last column: left out.
TEST(Csv, ASeparatorEndingEveryLineIsAnEmptyColumnLeftOut) {
  const CsvTable table = parse_csv("y,a,b,\n1,2,3,\n0,4,5,\n", "t.csv", "");
  EXPECT_EQ(table.features.feature_names, (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(table.labels.numbers, (std::vector<std::int64_t>{1, 0}));
  EXPECT_FLOAT_EQ(table.features.value(1, 1), 5.0f);
  // pandas' default column names after its index are a header too.
  const CsvTable pandas = parse_csv(",0,1\n0,1,0.5\n1,0,2.5\n", "t.csv", "");
  EXPECT_EQ(pandas.features.count, 2U);
  EXPECT_EQ(pandas.labels.numbers, (std::vector<std::int64_t>{1, 0}));
  EXPECT_EQ(pandas.features.feature_names, (std::vector<std::string>{"1"}));
}

// A file of another kind given as a table: said for what it is, not split into lines of nonsense.
TEST(Csv, AFileThatIsNotTextIsNamedForWhatItIs) {
  const auto error = [](const std::string& bytes) {
    return error_of([&] { parse_csv(bytes, "t.csv", ""); });
  };
  EXPECT_NE(error(std::string("\x93NUMPY\x01\x00v\x00{'descr': '<f4'}"))
                .find("t.csv: is not a CSV table; it is a NumPy .npy file"),
            std::string::npos);
  EXPECT_NE(error(std::string("PK\x03\x04\x14\x00\x00\x00", 8)).find("it is a zip archive"),
            std::string::npos);
  EXPECT_NE(
      error(std::string("\x1f\x8b\x08\x00", 4)).find("it is gzip-compressed: decompress it first (gunzip)"),
      std::string::npos);
  EXPECT_NE(error(std::string("\xff\xfey\x00,\x00a\x00\n\x00", 10)).find("it is UTF-16 text"),
            std::string::npos);
  const std::string zip_header = std::string("PK\x03\x04\x14\x00\x06\x00", 8) + std::string(22, '\x01');
  EXPECT_NE(error(zip_header + "[Content_Types].xml").find("it is an Excel workbook: save it as CSV"),
            std::string::npos);
  EXPECT_NE(error(std::string("\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1\x00", 9)).find("Excel 97-2003 workbook"),
            std::string::npos);
  EXPECT_NE(error("PAR1\x15\x04").find("it is a Parquet file"), std::string::npos);
  EXPECT_NE(error(std::string("\x89HDF\r\n\x1a\n\x00", 9)).find("it is an HDF5 file"), std::string::npos);
  EXPECT_NE(error(std::string("\x80\x04\x95\x00", 4)).find("it is a Python pickle"), std::string::npos);
  EXPECT_NE(error(std::string("y,a\n1,\x00\n", 8)).find("is not a CSV table; it holds binary data"),
            std::string::npos);
}

// Booleans as pandas (True/False: pd.get_dummies' one-hot columns), R and spreadsheets (TRUE/FALSE) write
// them are features 1 and 0, as numpy's astype(np.float32) makes them; a first line of them is data.
TEST(Csv, TruthValuesAreFeaturesOneAndZero) {
  const CsvTable table =
      parse_csv("label,size,red\nbuy,0.5,True\nskip,1.5,False\nbuy,2,TRUE\nskip,3,false\n", "t.csv", "label");
  ASSERT_EQ(table.features.count, 4U);
  EXPECT_EQ((std::vector<float>{table.features.value(0, 1), table.features.value(1, 1),
                                table.features.value(2, 1), table.features.value(3, 1)}),
            (std::vector<float>{1, 0, 1, 0}));
  EXPECT_EQ(table.labels.text, (std::vector<std::string>{"buy", "skip", "buy", "skip"}));
  const CsvTable headless = parse_csv("1,True,0.5\n0,false,0.25\n", "t.csv", "");
  EXPECT_EQ(headless.features.count, 2U);  // no header: both lines are rows
  EXPECT_TRUE(headless.features.feature_names.empty());
  EXPECT_FLOAT_EQ(headless.features.value(0, 0), 1.0f);
  EXPECT_NE(error_of([] { parse_csv("y,a\n1,yes\n", "t.csv", "y"); }).find("'yes' is not a number"),
            std::string::npos);
  EXPECT_NE(error_of([] { parse_csv("y,a\n1,truest\n", "t.csv", "y"); }).find("'truest' is not a number"),
            std::string::npos);
}

// pandas' DataFrame.to_csv without index=False (and R's write.csv) writes the row index as a first column
// with no name: left out of the features, with a note, not learned from.
TEST(Csv, AnUnnamedFirstColumnIsRowNamesAndLeftOut) {
  const std::string text = ",a,b,label\n0,0.5,1.5,cat\n1,2.5,3.5,dog\n2,-1,4,cat\n";
  const CsvTable named = parse_csv(text, "t.csv", "label");
  EXPECT_EQ(named.features.width, 2U);
  EXPECT_EQ(named.features.feature_names, (std::vector<std::string>{"a", "b"}));
  EXPECT_FLOAT_EQ(named.features.value(1, 0), 2.5f);
  EXPECT_EQ(named.labels.text, (std::vector<std::string>{"cat", "dog", "cat"}));
  ASSERT_EQ(named.notes.size(), 1U);
  EXPECT_NE(named.notes[0].find("t.csv: column 1 has no name"), std::string::npos);
  EXPECT_NE(named.notes[0].find("left out"), std::string::npos);
  // By default the labels are the first column: the first named one, the row names left out.
  const CsvTable first = parse_csv(",y,a,b\n10,1,0.5,1.5\n11,0,2.5,3.5\n", "t.csv", "");
  EXPECT_EQ(first.labels.numbers, (std::vector<std::int64_t>{1, 0}));
  EXPECT_EQ(first.features.feature_names, (std::vector<std::string>{"a", "b"}));
  // pandas' default column names are numbers too; the label's name makes the first line a header.
  const CsvTable numbered = parse_csv(",0,1,label\n0,0.5,1.5,cat\n1,2.5,3.5,dog\n", "t.csv", "label");
  EXPECT_EQ(numbered.features.feature_names, (std::vector<std::string>{"0", "1"}));
  // Asked for by index, the unnamed column is the labels, as asked.
  const CsvTable asked = parse_csv(",a,b\n1,0.5,1.5\n0,2.5,3.5\n", "t.csv", "0");
  EXPECT_EQ(asked.labels.numbers, (std::vector<std::int64_t>{1, 0}));
  EXPECT_EQ(asked.features.width, 2U);
  EXPECT_TRUE(asked.notes.empty());
  // Without a header, or with a named first column, nothing is left out.
  EXPECT_EQ(parse_csv("0,0.5,1.5\n1,2.5,3.5\n", "t.csv", "").features.width, 2U);
  const CsvTable id = parse_csv("id,a,label\n7,0.5,cat\n8,2.5,dog\n", "t.csv", "label");
  EXPECT_EQ(id.features.width, 2U);
  EXPECT_TRUE(id.notes.empty());
  // Row names and a label, nothing else: no features.
  EXPECT_NE(error_of([] {
              parse_csv(",label\n0,cat\n1,dog\n", "t.csv", "label");
            }).find("no feature column besides the labels and the row names"),
            std::string::npos);
}

// Text in a named column while the labels came from the first column by default: the error says how to
// name the label column.
TEST(Csv, TextInANamedColumnSuggestsItAsTheLabelColumn) {
  EXPECT_NE(error_of([] { parse_csv("a,b,species\n0.5,1.5,cat\n2.5,3.5,dog\n", "t.csv", ""); })
                .find("line 2, column 3: 'cat' is not a number (if column 3 holds the labels, --label-column "
                      "species says so"),
            std::string::npos);
  // A name a shell would need quotes for: its index.
  EXPECT_NE(
      error_of([] { parse_csv("a,b,my kind\n0.5,1.5,cat\n", "t.csv", ""); }).find("--label-column 2 says so"),
      std::string::npos);
  // The label column given: no suggestion.
  EXPECT_EQ(error_of([] { parse_csv("y,a,b\n1,0.5,x\n", "t.csv", "y"); }).find("--label-column"),
            std::string::npos);
}

TEST(Csv, ThreadsParseRunsOfLinesAsOneThreadDoes) {
  TempDir dir;
  constexpr int kRows = 5000;  // two runs of more than 2,048 lines
  std::string text = "label,a,b\n";
  for (int i = 0; i < kRows; ++i)
    text += std::to_string(i % 3) + "," + std::to_string(i) + ".25," + std::to_string(-i) + "\n";
  const auto parse = [&](const std::string& table, int threads) {
    write_text(dir / "t.csv", table);
    return read_csv_file(dir / "t.csv", "", threads);
  };
  const CsvTable one = parse(text, 1), two = parse(text, 2);
  EXPECT_FALSE(two.labels.is_text);
  EXPECT_EQ(two.labels.numbers, one.labels.numbers);
  EXPECT_EQ(two.features.pixels, one.features.pixels);
  EXPECT_FLOAT_EQ(two.features.value(4999, 0), 4999.25f);
  EXPECT_EQ(two.labels.numbers[4999], 4999 % 3);
  // One text label in the second run makes every label text, in order.
  const CsvTable text_labels = parse(text + "cat,1,2\n", 2);
  ASSERT_TRUE(text_labels.labels.is_text);
  EXPECT_EQ(text_labels.labels.text.size(), static_cast<std::size_t>(kRows + 1));
  EXPECT_EQ(text_labels.labels.text[4], "1");
  EXPECT_EQ(text_labels.labels.text[kRows], "cat");
  // The error reported is the earliest line's, whichever thread found it first.
  std::string late = text;
  late.replace(late.find(",4499.25,"), 9, ",oops,");
  EXPECT_NE(error_of([&] { parse(late, 2); }).find("line 4501, column 2: 'oops' is not a number"),
            std::string::npos);
  std::string both = late;
  both.replace(both.find("\n1,100.25,-100\n"), 15, "\n1,100.25\n");
  EXPECT_NE(error_of([&] { parse(both, 2); }).find("line 102 has 2 cells, but the first line has 3"),
            std::string::npos);
}

TEST(Csv, LargeTablesAreDecodedOnceAndThenMappedInPlace) {
  TempDir dir, cache;
  const test::ScopedEnv env("SOFTREG_CACHE", cache.path().c_str());
  namespace fs = std::filesystem;
  const fs::path path = dir / "big.csv";
  std::string text = "a,b,c,d,kind,e,f,g\n";
  for (int i = 0; i < 25000; ++i) {  // about 1.3 MB: over the size from which tables are cached
    const std::string v = std::to_string(i) + ".5";
    text +=
        v + "," + v + "," + v + "," + v + "," + (i % 3 == 0 ? "cat" : "dog") + "," + v + "," + v + ",-1\n";
  }
  write_text(path, text);
  const CsvTable first = read_csv_file(path, "kind", 2);
  EXPECT_FALSE(first.features.pixels.is_view());
  const CsvTable second = read_csv_file(path, "kind", 2);
  EXPECT_TRUE(second.features.pixels.is_view());  // from the cache, in place
  EXPECT_EQ(second.features.pixels, first.features.pixels);
  EXPECT_EQ(second.features.count, 25000U);
  EXPECT_EQ(second.features.width, 7U);
  EXPECT_EQ(second.labels.text, first.labels.text);
  EXPECT_EQ(second.labels.text[3], "cat");
  EXPECT_EQ(second.features.feature_names, first.features.feature_names);
  EXPECT_EQ(second.features.label_name, "kind");  // from the cache entry
  // The same column by index is an entry of its own.
  const CsvTable by_index = read_csv_file(path, "4", 1);
  EXPECT_FALSE(by_index.features.pixels.is_view());
  EXPECT_EQ(by_index.labels.text, first.labels.text);
  EXPECT_TRUE(read_csv_file(path, "4", 1).features.pixels.is_view());
  // A changed file is parsed again, even at the same size.
  text.replace(text.find("\n1.5,"), 5, "\n7.5,");
  write_text(path, text);
  fs::last_write_time(path, fs::last_write_time(path) + std::chrono::seconds(1));
  const CsvTable changed = read_csv_file(path, "kind", 2);
  EXPECT_FALSE(changed.features.pixels.is_view());
  EXPECT_FLOAT_EQ(changed.features.value(1, 0), 7.5f);
  EXPECT_TRUE(read_csv_file(path, "kind", 2).features.pixels.is_view());
  // A damaged entry is passed over; a table that does not parse is not kept, and fails again.
  for (const auto& entry : fs::directory_iterator(cache.path())) {
    if (entry.path().extension() == ".csv") fs::resize_file(entry.path(), fs::file_size(entry.path()) - 1);
  }
  EXPECT_FALSE(read_csv_file(path, "kind", 2).features.pixels.is_view());
  text.replace(text.find("\n7.5,"), 5, "\nx.5,");
  write_text(path, text);
  fs::last_write_time(path, fs::last_write_time(path) + std::chrono::seconds(2));
  for (int attempt = 0; attempt < 2; ++attempt) {
    EXPECT_NE(
        error_of([&] { read_csv_file(path, "kind", 2); }).find("line 3, column 1: 'x.5' is not a number"),
        std::string::npos);
  }
}

// A table of `rows` lines under `header`, line i being `row(i)`: over the 1 MB from which a table's
// decoded copy is kept (checked, so that a test of the cache tests it).
template <class Row>
std::string table_over_a_megabyte(const std::string& header, int rows, Row row) {
  std::string text = header + "\n";
  for (int i = 0; i < rows; ++i)
    text += row(i) + "\n";
  EXPECT_GE(text.size(), std::size_t{1} << 20);
  return text;
}

// Columns a training table should not give as features (an id, a date): by name or index; a table
// without a header, the label column, an unknown name or an index past the end is an error naming it.
TEST(Csv, IgnoredColumnsAreLeftUnread) {
  const std::string text = "Id,a,when,b,label\n1,0.5,2024-01-02,1.5,cat\n2,2.5,2024-01-03,3.5,dog\n";
  const auto read = [&](const std::vector<std::string>& ignored) {
    return parse_csv(text, "t.csv", "label", 1, {}, ignored);
  };
  const CsvTable table = read({"Id", "2"});
  EXPECT_EQ(table.features.feature_names, (std::vector<std::string>{"a", "b"}));
  EXPECT_FLOAT_EQ(table.features.value(1, 1), 3.5f);
  EXPECT_EQ(read({"-5", "when"}).features.feature_names, (std::vector<std::string>{"a", "b"}));
  EXPECT_NE(error_of([&] { read({"Id"}); }).find("line 2, column 3: '2024-01-02' is not a number"),
            std::string::npos);
  EXPECT_NE(
      error_of([&] { read({"label"}); }).find("t.csv: --ignore-columns label: column 5 is the label column"),
      std::string::npos);
  EXPECT_NE(
      error_of([&] { read({"nope"}); }).find("--ignore-columns: there is no column 'nope' in the first line"),
      std::string::npos);
  EXPECT_NE(error_of([&] { read({"5"}); }).find("--ignore-columns 5 is out of range (5 columns)"),
            std::string::npos);
  EXPECT_NE(error_of([&] {
              parse_csv("0,1,2\n1,3,4\n", "t.csv", "", 1, {}, {"1"});
            }).find("--ignore-columns 1 needs a header line"),
            std::string::npos);
  EXPECT_NE(error_of([&] {
              read({"Id", "a", "when", "b"});
            }).find("has no feature column besides the labels and the columns ignored"),
            std::string::npos);
}

// A large table's decoded copy is kept per way of reading it: two models with their columns in other
// orders each read the same new rows in their own order.
TEST(Csv, ACachedTableIsReadInEachModelsColumnOrder) {
  TempDir dir, cache;
  const test::ScopedEnv env("SOFTREG_CACHE", cache.path().c_str());
  const std::filesystem::path path = dir / "new.csv";
  const std::string text =
      table_over_a_megabyte("y,a,b,c", 100000, [](int i) { return std::to_string(i % 2) + ",1,2,3.25"; });
  write_text(path, text);
  for (int round = 0; round < 2; ++round) {  // the second round from the cache
    const CsvTable ab = read_csv_file(path, "", 1, {"y", {"a", "b"}});
    const CsvTable ba = read_csv_file(path, "", 1, {"y", {"b", "a"}});
    const CsvTable c = read_csv_file(path, "y", 1, {}, {"a", "b"});
    EXPECT_EQ(round == 1, ab.features.pixels.is_view() && ba.features.pixels.is_view());
    EXPECT_FLOAT_EQ(ab.features.value(7, 0), 1.0f);
    EXPECT_FLOAT_EQ(ba.features.value(7, 0), 2.0f);
    EXPECT_EQ(c.features.width, 1U);
    EXPECT_FLOAT_EQ(c.features.value(7, 0), 3.25f);
  }
}

std::string gzip_text(const std::string& text) {
  const std::vector<std::uint8_t> bytes =
      test::gzip_bytes(std::vector<std::uint8_t>(text.begin(), text.end()));
  return std::string(bytes.begin(), bytes.end());
}

// A gzip-compressed table (.csv.gz, as pandas reads them) is read as its text; its decoded copy is kept
// once the text is large, however small the file.
TEST(Csv, AGzipCompressedTableIsReadAsItsText) {
  TempDir dir, cache;
  const test::ScopedEnv env("SOFTREG_CACHE", cache.path().c_str());
  const std::string text = table_over_a_megabyte("label,a,b", 150000, [](int i) {
    return std::to_string(i % 3) + ",0.5," + std::to_string(i % 7);  // a few KB compressed
  });
  write_text(dir / "t.csv", text);
  write_text(dir / "t.csv.gz", gzip_text(text));
  ASSERT_LT(std::filesystem::file_size(dir / "t.csv.gz"), 1U << 20);
  const CsvTable plain = read_csv_file(dir / "t.csv", "label");
  const CsvTable first = read_csv_file(dir / "t.csv.gz", "label");
  const CsvTable second = read_csv_file(dir / "t.csv.gz", "label");
  EXPECT_FALSE(first.features.pixels.is_view());
  EXPECT_TRUE(second.features.pixels.is_view());  // from the cache
  EXPECT_EQ(first.features.pixels, plain.features.pixels);
  EXPECT_EQ(second.features.pixels, plain.features.pixels);
  EXPECT_EQ(second.labels.numbers, plain.labels.numbers);
  EXPECT_EQ(csv_first_cells(dir / "t.csv.gz"), (std::vector<std::string>{"label", "a", "b"}));
  // A header longer than the chunks it is read in, after a blank line, compressed or not.
  std::string wide = "\nlabel";
  for (int c = 0; c < 2000; ++c)
    wide += ",column" + std::to_string(c);
  write_text(dir / "wide.csv", wide + "\n1" + std::string(2000, ',') + "\n");
  write_text(dir / "wide.csv.gz", gzip_text(wide + "\n"));
  for (const char* name : {"wide.csv", "wide.csv.gz"}) {
    const std::vector<std::string> cells = csv_first_cells(dir / name);
    ASSERT_EQ(cells.size(), 2001U) << name;
    EXPECT_EQ(cells.back(), "column1999") << name;
  }
  // A small one is read each time, not kept.
  write_text(dir / "small.csv.gz", gzip_text("label,a\n1,2\n0,3\n"));
  EXPECT_EQ(read_csv_file(dir / "small.csv.gz", "label").features.count, 2U);
  EXPECT_FALSE(read_csv_file(dir / "small.csv.gz", "label").features.pixels.is_view());
  // Damaged: named.
  std::string damaged = gzip_text(text);
  damaged.resize(damaged.size() / 2);
  write_text(dir / "damaged.csv.gz", damaged);
  EXPECT_NE(
      error_of([&] { read_csv_file(dir / "damaged.csv.gz", "label"); }).find("damaged.csv.gz: gzip data is"),
      std::string::npos);
}

TEST(Csv, ACachedTableKeepsItsNotes) {
  TempDir dir, cache;
  const test::ScopedEnv env("SOFTREG_CACHE", cache.path().c_str());
  const std::filesystem::path path = dir / "indexed.csv";
  const std::string text = table_over_a_megabyte(",a,b,c,label", 60000, [](int i) {
    return std::to_string(i) + ",0.25,1.5,-2," + std::to_string(i % 2);
  });
  write_text(path, text);
  const CsvTable first = read_csv_file(path, "label", 1);
  const CsvTable second = read_csv_file(path, "label", 1);
  EXPECT_TRUE(second.features.pixels.is_view());  // from the cache
  EXPECT_EQ(second.features.width, 3U);
  ASSERT_EQ(first.notes.size(), 1U);
  EXPECT_EQ(second.notes, first.notes);
}

// Writes an image folder: root/<split>/<class>/<i>.png, each image a w x h grey square whose brightness
// says its class.
void write_image_folder(const std::filesystem::path& root, const std::string& split, int per_class, int w,
                        int h) {
  const char* classes[3] = {"circle", "square", "zigzag"};
  for (int k = 0; k < 3; ++k) {
    const auto folder = root / split / classes[k];
    std::filesystem::create_directories(folder);
    for (int i = 0; i < per_class; ++i) {
      std::vector<std::uint8_t> px(static_cast<std::size_t>(w * h),
                                   static_cast<std::uint8_t>(40 + 90 * k + i % 7));
      const auto path = (folder / (std::to_string(i) + ".png")).string();
      ASSERT_TRUE(stbi_write_png(path.c_str(), w, h, 1, px.data(), w));
    }
  }
}

TEST(ImageFolder, ReadsClassesFromFolderNamesAndCachesTheDecode) {
  TempDir dir, cache;
  const test::ScopedEnv env("SOFTREG_CACHE", cache.path().c_str());
  write_image_folder(dir.path(), "train", 10, 6, 4);
  write_image_folder(dir.path(), "test", 3, 6, 4);
  ASSERT_TRUE(is_image_folder(dir.path()));
  DataSource s;
  s.data = dir.path();
  s.threads = 2;
  const LoadedData first = load_data(s);
  EXPECT_EQ(first.kind, "images");
  EXPECT_EQ(first.data.train.class_names, (std::vector<std::string>{"circle", "square", "zigzag"}));
  EXPECT_EQ(first.data.train.count, 30u);
  EXPECT_EQ(first.data.test.count, 9u);
  EXPECT_EQ(first.data.train.height, 4u);  // the images' own size
  EXPECT_EQ(first.data.train.width, 6u);
  EXPECT_EQ(first.data.train.image(10)[0], 130);  // "square", first image
  EXPECT_FALSE(first.data.train.pixels.is_view());
  const LoadedData second = load_data(s);  // from the cache: mapped in place
  EXPECT_TRUE(second.data.train.pixels.is_view());
  EXPECT_EQ(second.data.train.pixels, first.data.train.pixels);
  EXPECT_EQ(second.data.train.labels, first.data.train.labels);
  // A warm load decodes nothing: an image made unreadable behind the cache's back (same size and time)
  // is not noticed, while a new image changes the listing and so the entry.
  const auto victim = dir / "test/square/0.png";
  const auto size = std::filesystem::file_size(victim);
  const auto time = std::filesystem::last_write_time(victim);
  write_text(victim, std::string(size, 'x'));
  std::filesystem::last_write_time(victim, time);
  EXPECT_EQ(load_data(s).data.test.pixels, first.data.test.pixels);
  std::filesystem::copy_file(dir / "train/circle/1.png", dir / "train/circle/new.png");
  EXPECT_THROW(load_data(s), Error);  // decoded again: the unreadable image is found now
  std::filesystem::remove(victim);
  EXPECT_EQ(load_data(s).data.train.count, 31u);
  std::filesystem::remove(dir / "train/circle/new.png");
  const LoadedData own_size = load_data(s);  // decoded again (the listing changed twice), then cached
  // The images' own size asked for by name (a model's size, say) is served by that entry: nothing decoded.
  s.image_height = 4;
  s.image_width = 6;
  const LoadedData named = load_data(s);
  EXPECT_TRUE(named.data.train.pixels.is_view());
  EXPECT_EQ(named.data.train.pixels, own_size.data.train.pixels);
  EXPECT_EQ(named.data.test.pixels, own_size.data.test.pixels);
  s.image_height = 2;
  s.image_width = 3;
  const LoadedData small = load_data(s);
  EXPECT_EQ(small.data.train.features(), 6u);
  EXPECT_EQ(small.data.train.image(10)[0], 130);  // area averaging keeps a flat image flat
}

TEST(ImageFolder, FindsImagesInNestedFoldersAsTorchvisionDoes) {
  TempDir dir;
  const test::ScopedEnv env("SOFTREG_CACHE", "off");
  write_image_folder(dir.path(), "train", 2, 5, 5);
  write_image_folder(dir.path(), "test", 1, 5, 5);
  namespace fs = std::filesystem;
  fs::create_directories(dir / "train/circle/2019/june");
  fs::copy_file(dir / "train/circle/0.png", dir / "train/circle/2019/june/x.png");
  fs::copy_file(dir / "train/square/0.png", dir / "train/square/1b.png");
  // Left out: hidden folders (Jupyter's checkpoints) and what a link back up would list again.
  fs::create_directories(dir / "train/circle/.ipynb_checkpoints");
  fs::copy_file(dir / "train/circle/0.png", dir / "train/circle/.ipynb_checkpoints/0.png");
  fs::create_directory_symlink("..", dir / "train/zigzag/up");
  DataSource s;
  s.data = dir.path();
  const LoadedData loaded = load_data(s);
  EXPECT_EQ(loaded.data.train.count, 8u);  // 2 + 1 nested circles, 3 squares, 2 zigzags
  const std::vector<Label> expected = {0, 0, 0, 1, 1, 1, 2, 2};
  EXPECT_EQ(loaded.data.train.labels, expected);
  // A format softreg does not read is named, not silently left out; --skip-bad-images counts it.
  write_text(dir / "train/zigzag/scan.TIFF", std::string("II*\0\x08\0\0\0", 8) + std::string(32, '\0'));
  EXPECT_NE(error_of([&] { load_data(s); }).find("scan.TIFF: is a TIFF image"), std::string::npos);
  s.skip_bad_images = true;
  EXPECT_EQ(load_data(s).skipped_images, 1U);
}

// A model whose weights are all zero, for inputs of height x width values and the named classes.
ModelFile zero_model(int height, int width, InputKind input, ElementType element,
                     std::vector<std::string> class_names) {
  ModelFile model;
  model.model.W = WeightMatrix::Zero(height * width, static_cast<Eigen::Index>(class_names.size()));
  model.model.b = BiasVector::Zero(static_cast<Eigen::Index>(class_names.size()));
  model.height = height;
  model.width = width;
  model.input = input;
  model.element = element;
  model.class_names = std::move(class_names);
  return model;
}

// A model of two float features and three named classes.
ModelFile ant_bee_cat_model() {
  return zero_model(1, 2, InputKind::kFeatures, ElementType::kF32, {"ant", "bee", "cat"});
}

// Options given without data (--skip-bad-images, say) apply to the data the model records, not to a
// source that names none (which would find the default Fashion-MNIST).
TEST(ImageFolder, OptionsWithoutDataApplyToTheModelsOwnData) {
  TempDir dir;
  const test::ScopedEnv env("SOFTREG_CACHE", "off");
  write_image_folder(dir.path(), "train", 2, 6, 4);
  write_image_folder(dir.path(), "test", 2, 6, 4);
  write_text(dir / "test/square/broken.png", "not an image");
  ModelFile model = zero_model(4, 6, InputKind::kImages, ElementType::kU8, {"circle", "square", "zigzag"});
  DataSource recorded;
  recorded.data = dir.path();
  model.metadata["data_source"] = source_to_json(recorded);
  EXPECT_NE(error_of([&] { load_split_for_model(model, std::nullopt, "test"); }).find("broken.png"),
            std::string::npos);
  DataSource options;
  options.skip_bad_images = true;
  ASSERT_FALSE(names_data(options));
  const SplitData split = load_split_for_model(model, options, "test");
  EXPECT_EQ(split.data.count, 6U);  // the model's test/ less the broken image
  EXPECT_EQ(split.folder, dir / "test");
  // Only the options it sets: the recorded source keeps the rest.
  DataSource to = recorded;
  to.classes = 3;
  to.seed = 7;
  options.test_fraction = 0.25;
  options.seed = 0;
  apply_options(options, to);
  EXPECT_TRUE(to.skip_bad_images);
  EXPECT_EQ(to.classes, 3);
  EXPECT_EQ(to.test_fraction, 0.25);
  EXPECT_EQ(to.seed, 7U);  // the split drawn as the model's was
  EXPECT_EQ(to.data, recorded.data);
}

// A model's own data given again with --test-fraction (eval --train-features ... --test-fraction F) is split
// with the model's seed: the rows it was tested on, not a draw that puts its training rows among them.
TEST(Sources, AModelsOwnDataGivenAgainIsSplitWithItsSeed) {
  TempDir dir;
  write_blob_npys(dir);
  ModelFile model = zero_model(1, 2, InputKind::kFeatures, ElementType::kF32, {"0", "1", "2"});
  DataSource recorded = npy_source(dir);
  recorded.test_features.clear();
  recorded.test_labels.clear();
  recorded.test_fraction = 0.25;
  recorded.seed = 7;
  model.metadata["data_source"] = source_to_json(recorded);
  DataSource given = recorded;
  given.seed = 0;  // eval's flags carry no seed of their own
  const SplitData own = load_split_for_model(model, std::nullopt, "test");
  const SplitData again = load_split_for_model(model, given, "test");
  EXPECT_EQ(again.data.count, 75U);
  EXPECT_EQ(again.data.pixels, own.data.pixels);
  EXPECT_EQ(again.data.labels, own.data.labels);
  EXPECT_NE(load_data(given).data.test.pixels, own.data.pixels);  // seed 0 draws other rows
}

TEST(ImageFolder, ClassFoldersAloneAreEvaluatedWholeAtTheModelsSize) {
  TempDir dir;
  const test::ScopedEnv env("SOFTREG_CACHE", "off");
  write_image_folder(dir.path(), "new", 2, 6, 4);   // new/<class>/<i>.png, no train/ or test/
  std::filesystem::remove_all(dir / "new/circle");  // two of the model's three classes
  const ModelFile model =
      zero_model(2, 2, InputKind::kImages, ElementType::kU8, {"circle", "square", "zigzag"});
  DataSource s;
  s.data = dir / "new";
  const SplitData split = load_split_for_model(model, s, "test");
  EXPECT_EQ(split.data.count, 4U);
  EXPECT_EQ(split.data.labels, (std::vector<Label>{1, 1, 2, 2}));
  EXPECT_EQ(split.data.height, 2U);        // resized from 6x4 to the model's 2x2
  EXPECT_EQ(split.data.image(0)[3], 130);  // "square", first image: flat, so still 130
  EXPECT_NE(error_of([&] { load_split_for_model(model, s, "train"); }).find("holds only class folders"),
            std::string::npos);
  // A data set root with only its test/ split: that split.
  write_image_folder(dir.path(), "root/test", 1, 6, 4);
  s.data = dir / "root";
  EXPECT_EQ(load_split_for_model(model, s, "test").data.labels, (std::vector<Label>{0, 1, 2}));
  s.data = dir / "new";
  std::filesystem::create_directories(dir / "new/dog");
  std::filesystem::copy_file(dir / "new/square/0.png", dir / "new/dog/0.png");
  EXPECT_NE(error_of([&] {
              load_split_for_model(model, s, "test");
            }).find("has class 'dog', which the model does not know"),
            std::string::npos);
}

// A model trained with --image-size, given its own folder again (or one of images of another size): read at
// the model's size as predict reads files, not at the images' own and found the wrong size.
TEST(ImageFolder, AFolderGivenToAModelIsReadAtTheModelsSize) {
  TempDir dir;
  const test::ScopedEnv env("SOFTREG_CACHE", "off");
  write_image_folder(dir.path(), "train", 2, 6, 4);
  write_image_folder(dir.path(), "test", 2, 6, 4);
  const ModelFile model =
      zero_model(2, 3, InputKind::kImages, ElementType::kU8, {"circle", "square", "zigzag"});
  DataSource s;
  s.data = dir.path();
  for (const char* split : {"test", "train"}) {
    const SplitData loaded = load_split_for_model(model, s, split);
    EXPECT_EQ(loaded.data.height, 2U) << split;
    EXPECT_EQ(loaded.data.width, 3U) << split;
    EXPECT_EQ(loaded.data.image(2)[5], 130) << split;  // "square", first image: flat, so still 130
  }
  // --image-size has nothing to choose: the model's size is the only one it reads.
  s.image_height = 4;
  s.image_width = 6;
  EXPECT_NE(error_of([&] { load_split_for_model(model, s, "test"); })
                .find("--image-size does not apply to a trained model's data: its images are read at the "
                      "model's size, 2x3"),
            std::string::npos);
  // Other sources, and folders given a size, keep theirs.
  DataSource sized;
  sized.data = dir.path();
  sized.image_height = 4;
  sized.image_width = 6;
  read_images_at_model_size(2, 3, sized);
  EXPECT_EQ(sized.image_height, 4);
  DataSource idx;  // no image folder there: the IDX search
  idx.data = dir / "no-such";
  read_images_at_model_size(2, 3, idx);
  EXPECT_EQ(idx.image_height, 0);
}

// Kaggle's dogs-vs-cats layout (train/cat.1.jpg, train/dog.1.jpg: classes in the file names) is not an
// ImageFolder: the error counts the loose images and says what to do with them.
TEST(ImageFolder, ImagesLyingLooseInTrainAreCountedInTheError) {
  TempDir dir;
  const test::ScopedEnv env("SOFTREG_CACHE", "off");
  write_image_folder(dir.path(), "flat", 1, 4, 4);
  std::filesystem::create_directories(dir / "train");
  std::filesystem::copy_file(dir / "flat/circle/0.png", dir / "train/cat.1.png");
  std::filesystem::copy_file(dir / "flat/square/0.png", dir / "train/dog.1.PNG");
  write_text(dir / "train/notes.txt", "not an image");
  std::filesystem::remove_all(dir / "flat");
  DataSource s;
  s.data = dir.path();
  s.test_fraction = 0.5;
  EXPECT_NE(
      error_of([&] { load_data(s); })
          .find("train: has no class folders (expected <class>/<images>); its 2 images lie loose: move each "
                "into a folder named for its class"),
      std::string::npos);
}

TEST(ImageFolder, AValFolderIsTheTestSetWhereNoTestFolderHasLabels) {
  TempDir dir;
  const test::ScopedEnv env("SOFTREG_CACHE", "off");
  write_image_folder(dir.path(), "train", 4, 5, 5);
  write_image_folder(dir.path(), "val", 2, 5, 5);  // ImageNet's layout: train/ and val/
  DataSource s;
  s.data = dir.path();
  const LoadedData with_val = load_data(s);
  EXPECT_EQ(with_val.data.test.count, 6U);
  EXPECT_EQ(with_val.test_file, dir / "val");
  // A test/ of images without class folders (Kaggle's unlabelled test set) is not a test set.
  std::filesystem::create_directories(dir / "test");
  std::filesystem::copy_file(dir / "val/circle/0.png", dir / "test/0.png");
  EXPECT_EQ(load_data(s).data.test.count, 6U);
  std::filesystem::rename(dir / "val", dir / "v");
  EXPECT_NE(error_of([&] { load_data(s); }).find("test has no class folders"), std::string::npos);
  // A labelled test/ comes first.
  std::filesystem::rename(dir / "v", dir / "val");
  write_image_folder(dir.path(), "test", 1, 5, 5);
  EXPECT_EQ(load_data(s).data.test.count, 3U);
  EXPECT_EQ(load_data(s).test_file, dir / "test");
  // A root holding only val/ evaluates that split.
  std::filesystem::remove_all(dir / "train");
  std::filesystem::remove_all(dir / "test");
  const ModelFile model =
      zero_model(5, 5, InputKind::kImages, ElementType::kU8, {"circle", "square", "zigzag"});
  const SplitData split = load_split_for_model(model, s, "test");
  EXPECT_EQ(split.data.labels, (std::vector<Label>{0, 0, 1, 1, 2, 2}));
  EXPECT_EQ(split.folder, dir / "val");
}

TEST(Sources, AValidationSetGivenWithTheDataIsLoadedBesideTheTestSet) {
  TempDir dir;
  const test::ScopedEnv env("SOFTREG_CACHE", (dir / "cache").c_str());
  // Image folders: train/, test/ and val/ (the layout of many data sets), each split its own.
  write_image_folder(dir / "images", "train", 4, 5, 5);
  write_image_folder(dir / "images", "test", 2, 5, 5);
  write_image_folder(dir / "images", "val", 3, 5, 5);
  DataSource s;
  s.data = dir / "images";
  for (int run = 0; run < 2; ++run) {  // decoded, then from the cache
    const LoadedData images = load_data(s);
    EXPECT_EQ(images.data.test.count, 6U);
    ASSERT_TRUE(images.data.validation.has_value());
    EXPECT_EQ(images.data.validation->count, 9U);
    EXPECT_EQ(images.data.validation->labels, (std::vector<Label>{0, 0, 0, 1, 1, 1, 2, 2, 2}));
    EXPECT_EQ(images.validation_file, dir / "images/val");
  }
  std::filesystem::remove_all(dir / "images/test");  // then val/ is the test set
  EXPECT_FALSE(load_data(s).data.validation.has_value());
  EXPECT_EQ(load_data(s).data.test.count, 9U);

  // Arrays: --val-features and --val-labels, or an .npz's x_val and y_val.
  write_blob_npys(dir);
  s = DataSource();
  s.train_features = dir / "xtr.npy";
  s.train_labels = dir / "ytr.npy";
  s.test_features = dir / "xte.npy";
  s.test_labels = dir / "yte.npy";
  s.val_features = dir / "xte.npy";
  s.val_labels = dir / "yte.npy";
  const LoadedData arrays = load_data(s);
  ASSERT_TRUE(arrays.data.validation.has_value());
  EXPECT_EQ(arrays.data.validation->labels, arrays.data.test.labels);
  EXPECT_EQ(arrays.data.validation->class_names, arrays.data.train.class_names);
  s.val_labels.clear();
  EXPECT_NE(error_of([&] { load_data(s); }).find("--val-features needs --val-labels"), std::string::npos);
  // A part without the training arrays, or a labels file alone, is a usage error naming what is missing,
  // never a run on the default data.
  DataSource alone;
  alone.train_labels = dir / "ytr.npy";
  EXPECT_NE(error_of([&] { load_data(alone); }).find("--train-features needs --train-labels"),
            std::string::npos);
  alone = DataSource();
  alone.val_features = dir / "xte.npy";
  alone.val_labels = dir / "yte.npy";
  EXPECT_NE(error_of([&] {
              load_data(alone);
            }).find("--val-features needs the training arrays, --train-features and --train-labels"),
            std::string::npos);
  alone.test_features = dir / "xte.npy";
  alone.test_labels = dir / "yte.npy";
  EXPECT_NE(error_of([&] { load_data(alone); }).find("--test-features needs the training arrays"),
            std::string::npos);
  // An empty array of features is named as such, not its labels (which then do not match it either).
  write_text(dir / "none.npy", npy_bytes("<f4", {0, 2}, ""));
  s.val_labels = dir / "yte.npy";
  s.val_features = dir / "none.npy";
  EXPECT_NE(error_of([&] { load_data(s); }).find("none.npy: has no rows"), std::string::npos);
  s.val_features = dir / "xte.npy";
  s.train_features = dir / "none.npy";
  EXPECT_NE(error_of([&] { load_data(s); }).find("none.npy: has no rows"), std::string::npos);

  // Tables: --val-csv, its columns matched by name; its labels must be training classes.
  write_text(dir / "train.csv", "kind,x,y\ncat,1,2\ndog,3,4\ncat,5,6\n");
  write_text(dir / "test.csv", "kind,x,y\ndog,1,1\n");
  write_text(dir / "val.csv", "y,x,kind\n20,10,dog\n40,30,cat\n");
  s = DataSource();
  s.train_csv = dir / "train.csv";
  s.test_csv = dir / "test.csv";
  s.val_csv = dir / "val.csv";
  const LoadedData tables = load_data(s);
  ASSERT_TRUE(tables.data.validation.has_value());
  EXPECT_EQ(tables.data.validation->labels, (std::vector<Label>{1, 0}));
  EXPECT_EQ(tables.data.validation->value(0, 0), 10.0F);
  write_text(dir / "val.csv", "kind,x,y\neel,1,2\n");
  EXPECT_NE(error_of([&] {
              load_data(s);
            }).find("val.csv: label 'eel' at index 0 is not one of the training set's classes (cat, dog)"),
            std::string::npos);
  // Recorded with the run, so that a resumed run finds it again.
  EXPECT_EQ(source_from_json(source_to_json(s), "here").val_csv, std::filesystem::absolute(dir / "val.csv"));
}

// A training table whose label column differs in every row (Kaggle's tables start with an Id, taken for the
// labels by default) is refused, naming the column; from 20 rows on, so toy tables still train.
TEST(Csv, ALabelColumnThatDiffersInEveryRowIsAnIdNotClasses) {
  TempDir dir;
  const test::ScopedEnv env("SOFTREG_CACHE", "off");
  std::string ids = "Id,x,Species\n", headless, names = "name,x\n";
  for (int i = 1; i <= 30; ++i) {
    ids += std::to_string(i) + "," + std::to_string(i % 4) + ".5," + std::to_string(i % 2) + "\n";
    headless += std::to_string(i * 3) + "," + std::to_string(i % 4) + "\n";
    names += "row" + std::to_string(i) + ",1\n";
  }
  write_text(dir / "ids.csv", ids);
  write_text(dir / "headless.csv", headless);
  write_text(dir / "names.csv", names);
  DataSource s;
  s.train_csv = dir / "ids.csv";
  s.test_fraction = 0.2;
  EXPECT_NE(
      error_of([&] {
        load_data(s);
      }).find("ids.csv: the labels (column 'Id') differ in every one of the 30 rows: an id, not classes"),
      std::string::npos);
  s.label_column = "Species";
  EXPECT_EQ(load_data(s).data.train.num_classes, 2);
  s.label_column = "";
  s.train_csv = dir / "headless.csv";
  EXPECT_NE(
      error_of([&] { load_data(s); }).find("the labels (the first column, by default) differ in every one"),
      std::string::npos);
  s.train_csv = dir / "names.csv";
  EXPECT_NE(error_of([&] { load_data(s); }).find("(column 'name') differ in every one of the 30 rows"),
            std::string::npos);
  // A test table may hold one row of each class.
  std::string train = "y,x\n", test = "y,x\n";
  for (int i = 0; i < 30; ++i) {
    train += std::to_string(i % 25) + "," + std::to_string(i) + "\n";
    if (i < 25) test += std::to_string(i) + ",1\n";
  }
  write_text(dir / "train.csv", train);
  write_text(dir / "test.csv", test);
  s.train_csv = dir / "train.csv";
  s.test_csv = dir / "test.csv";
  s.test_fraction = 0;
  EXPECT_EQ(load_data(s).data.test.count, 25U);
}

TEST(ImageFolder, ATestClassTheTrainingFolderLacksIsAClassOfBothAsInATable) {
  TempDir dir;
  const test::ScopedEnv env("SOFTREG_CACHE", "off");
  write_image_folder(dir.path(), "train", 2, 5, 5);
  write_image_folder(dir.path(), "test", 1, 5, 5);
  std::filesystem::create_directories(dir / "test/fox");
  std::filesystem::copy_file(dir / "test/square/0.png", dir / "test/fox/0.png");
  DataSource s;
  s.data = dir.path();
  const LoadedData loaded = load_data(s);
  const std::vector<std::string> classes = {"circle", "fox", "square", "zigzag"};  // sorted, as torchvision
  EXPECT_EQ(loaded.data.train.class_names, classes);
  EXPECT_EQ(loaded.data.test.class_names, classes);
  EXPECT_EQ(loaded.data.train.num_classes, 4);
  EXPECT_EQ(loaded.data.train.labels, (std::vector<Label>{0, 0, 2, 2, 3, 3}));  // no fox to learn
  EXPECT_EQ(loaded.data.test.labels, (std::vector<Label>{0, 1, 2, 3}));
  EXPECT_EQ(examples_per_class(loaded.data.train)[1], 0);
  // A validation folder's classes must be among them, as a validation table's labels must.
  write_image_folder(dir.path(), "val", 1, 5, 5);
  EXPECT_EQ(load_data(s).data.validation->labels, (std::vector<Label>{0, 2, 3}));
  std::filesystem::create_directories(dir / "val/owl");
  std::filesystem::copy_file(dir / "val/square/0.png", dir / "val/owl/0.png");
  EXPECT_NE(
      error_of([&] { load_data(s); }).find("owl: is a class neither the training nor the test folder has"),
      std::string::npos);
}

TEST(ImageFolder, BadImagesEmptyClassesAndMissingTest) {
  TempDir dir;
  const test::ScopedEnv env("SOFTREG_CACHE", "off");
  write_image_folder(dir.path(), "train", 4, 5, 5);
  write_text(dir / "train/square/broken.png", "not really a png");
  DataSource s;
  s.data = dir.path();
  EXPECT_NE(error_of([&] { load_data(s); }).find("broken.png"), std::string::npos);
  s.skip_bad_images = true;
  s.test_fraction = 0.25;
  const LoadedData skipped = load_data(s);
  EXPECT_EQ(skipped.skipped_images, 1u);
  EXPECT_EQ(skipped.data.train.count + skipped.data.test.count, 12u);
  EXPECT_EQ(skipped.data.test.count, 3u);  // one of each class
  s.test_fraction = 0;
  EXPECT_THROW(load_data(s), UsageError);  // no test folder, no --test-fraction
  std::filesystem::create_directories(dir / "train/empty");
  s.test_fraction = 0.25;
  EXPECT_NE(error_of([&] { load_data(s); }).find("empty: is an empty class folder"), std::string::npos);
}

TEST(Sources, FilesAreTakenForImagesOrFeatureRowsByTheirExtensionInAnyCase) {
  for (const char* name : {"a.png", "b.JPG", "c.Jpeg", "d.pgm", "e.tiff"}) {
    EXPECT_TRUE(is_image_file(name)) << name;
    EXPECT_FALSE(is_feature_file(name)) << name;
  }
  for (const char* name : {"a.npy", "b.NPZ", "c.csv", "d.Tsv", "e.csv.gz", "f.CSV.GZ"}) {
    EXPECT_TRUE(is_feature_file(name)) << name;
    EXPECT_FALSE(is_image_file(name)) << name;
  }
  for (const char* name : {"notes.txt", "png", "x.png.gz"}) {
    EXPECT_FALSE(is_image_file(name)) << name;
    EXPECT_FALSE(is_feature_file(name)) << name;
  }
}

TEST(Sources, IdxFoldersFindTheirClassCountAndNames) {
  TempDir dir;
  const std::vector<std::uint8_t> pixels(4 * 2 * 2, 7);
  test::write_bytes(dir / "train-images-idx3-ubyte", test::idx_bytes(kIdxImagesMagic, {4, 2, 2}, pixels));
  test::write_bytes(dir / "train-labels-idx1-ubyte", test::idx_bytes(kIdxLabelsMagic, {4}, {0, 1, 2, 1}));
  test::write_bytes(dir / "t10k-images-idx3-ubyte", test::idx_bytes(kIdxImagesMagic, {4, 2, 2}, pixels));
  test::write_bytes(dir / "t10k-labels-idx1-ubyte", test::idx_bytes(kIdxLabelsMagic, {4}, {0, 0, 1, 2}));
  DataSource s;
  s.data = dir.path();
  LoadedData loaded = load_data(s);
  EXPECT_EQ(loaded.data.train.num_classes, 3);  // not Fashion-MNIST's 10, not its names
  EXPECT_FALSE(loaded.seed_data);
  EXPECT_EQ(loaded.data.train.class_names, (std::vector<std::string>{"0", "1", "2"}));
  s.classes = 12;
  EXPECT_EQ(load_data(s).data.train.num_classes, 12);
  write_text(dir / "classes.txt", "zero\none\ntwo\nthree\n");
  s.classes = 0;
  loaded = load_data(s);
  EXPECT_EQ(loaded.data.train.num_classes, 4);
  EXPECT_EQ(loaded.data.test.class_names[3], "three");
  write_text(dir / "classes.txt", "zero\n");
  EXPECT_NE(error_of([&] { load_data(s); }).find("classes.txt: names 1 classes, but the labels go up to 2"),
            std::string::npos);
}

TEST(Sources, EvaluationDataMapsClassesToTheModelsByNameOrNumber) {
  TempDir dir;
  ModelFile model = ant_bee_cat_model();
  // The evaluation rows have only two of the three classes: sorted on their own they would be 0 and 1.
  write_text(dir / "few.csv", "kind,x,y\ncat,1,2\nbee,3,4\ncat,5,6\n");
  DataSource s;
  s.train_csv = s.test_csv = dir / "few.csv";
  const SplitData split = load_split_for_model(model, s, "test");
  EXPECT_EQ(split.data.labels, (std::vector<Label>{2, 1, 2}));
  EXPECT_EQ(split.data.class_names, model.class_names);
  write_text(dir / "other.csv", "kind,x,y\ndog,1,2\ncat,3,4\n");
  s.train_csv = s.test_csv = dir / "other.csv";
  EXPECT_NE(error_of([&] {
              load_split_for_model(model, s, "test");
            }).find("has class 'dog', which the model does not know"),
            std::string::npos);
  // Numbered classes keep their numbers, and may not go past the model's.
  write_text(dir / "numbers.csv", "1,1,2\n1,3,4\n");
  s.train_csv = s.test_csv = dir / "numbers.csv";
  EXPECT_EQ(load_split_for_model(model, s, "test").data.labels, (std::vector<Label>{1, 1}));
  write_text(dir / "numbers.csv", "3,1,2\n0,3,4\n");
  EXPECT_NE(error_of([&] {
              load_split_for_model(model, s, "test");
            }).find("has labels up to 3, but the model has 3 classes"),
            std::string::npos);
}

TEST(Sources, TestRowsAloneAreEvaluatedWithTheModelsClasses) {
  TempDir dir;
  ModelFile model = ant_bee_cat_model();
  // Trained on a table whose labels were its last column: new rows in that layout need no flag.
  DataSource trained_on;
  trained_on.train_csv = dir / "train.csv";
  trained_on.label_column = "kind";
  model.metadata["data_source"] = source_to_json(trained_on);
  EXPECT_EQ(recorded_label_column(model), "kind");

  // One class only, no training rows: as load_data would read it, this is "1 class" and an error.
  write_text(dir / "new.csv", "x,y,kind\n1,2,cat\n3,4,cat\n");
  DataSource s;
  s.test_csv = dir / "new.csv";
  ASSERT_TRUE(names_test_part_only(s));
  SplitData split = load_split_for_model(model, s, "test");
  EXPECT_EQ(split.data.labels, (std::vector<Label>{2, 2}));
  EXPECT_EQ(split.data.num_classes, 3);
  EXPECT_EQ(split.folder, dir / "new.csv");
  EXPECT_EQ(split.data.features(), 2U);
  EXPECT_NE(
      error_of([&] { load_split_for_model(model, s, "train"); }).find("--split train needs training data"),
      std::string::npos);
  write_text(dir / "dog.csv", "x,y,kind\n1,2,cat\n3,4,dog\n");
  s.test_csv = dir / "dog.csv";
  EXPECT_NE(error_of([&] {
              load_split_for_model(model, s, "test");
            }).find("dog.csv: label 'dog' at index 1 is not one of the model's classes (ant, bee, cat)"),
            std::string::npos);

  // Arrays: numbers are the model's classes of those numbers.
  s = DataSource();
  s.test_features = dir / "x.npy";
  s.test_labels = dir / "y.npy";
  write_text(s.test_features, npy_bytes("<f4", {2, 2}, raw(std::vector<float>{1, 2, 3, 4})));
  write_text(s.test_labels, npy_bytes("<i2", {2}, raw(std::vector<std::int16_t>{0, 0})));
  split = load_split_for_model(model, s, "test");
  EXPECT_EQ(split.data.labels, (std::vector<Label>{0, 0}));
  EXPECT_EQ(split.data.class_names, model.class_names);
  write_text(s.test_labels, npy_bytes("<i2", {2}, raw(std::vector<std::int16_t>{0, 3})));
  EXPECT_NE(error_of([&] {
              load_split_for_model(model, s, "test");
            }).find("y.npy: label 3 at index 1 is out of range (the model's classes are 0 to 2)"),
            std::string::npos);
  write_text(s.test_labels, npy_bytes("<i2", {3}, raw(std::vector<std::int16_t>{0, 1, 2})));
  EXPECT_NE(error_of([&] { load_split_for_model(model, s, "test"); }).find("y.npy: has 3 labels for 2 rows"),
            std::string::npos);
  s.test_labels.clear();
  EXPECT_NE(
      error_of([&] { load_split_for_model(model, s, "test"); }).find("--test-features needs --test-labels"),
      std::string::npos);

  // Prediction reads the training layout's features past the recorded label column.
  write_text(dir / "rows.csv", "x,y,kind\n1,2,cat\n3,4,?\n");
  model.model.W << 1, 0, 0, 0, 0, 1;  // class 0 from x, class 2 from y
  const std::vector<Prediction> predictions = predict_feature_file(model, dir / "rows.csv", "");
  ASSERT_EQ(predictions.size(), 2U);
  EXPECT_EQ(predictions[1].top(1), std::vector<int>{2});
  EXPECT_GT(predictions[1].probabilities[2], predictions[0].probabilities[2]);
  // Feature columns only, under a header whose quoted name holds a comma: two cells, not three.
  write_text(dir / "plain.csv", "\"x, first\",y\n1,2\n");
  const std::vector<Prediction> plain = predict_feature_file(model, dir / "plain.csv", "");
  ASSERT_EQ(plain.size(), 1U);
  EXPECT_EQ(plain[0].probabilities, predictions[0].probabilities);  // the same row as rows.csv's first
}

TEST(Sources, TableColumnsAreMatchedToTheTrainingTablesByName) {
  TempDir dir;
  // The parser: the columns asked for, in that order; others (a text id) left unread.
  write_text(dir / "t.csv", "id,y,kind,x\nrow-a,2,cat,1\nrow-b,4,dog,3\n");
  const CsvTable picked = read_csv_file(dir / "t.csv", "kind", 1, {"", {"x", "y"}});
  EXPECT_EQ(picked.features.feature_names, (std::vector<std::string>{"x", "y"}));
  EXPECT_EQ(picked.features.value(1, 0), 3.0F);
  EXPECT_EQ(picked.features.value(1, 1), 4.0F);
  EXPECT_EQ(picked.labels.text, (std::vector<std::string>{"cat", "dog"}));
  EXPECT_EQ(picked.features.label_name, "kind");
  // The training table's label column by name, where no --label-column is given.
  EXPECT_EQ(read_csv_file(dir / "t.csv", "", 1, {"kind", {"x"}}).labels.text,
            (std::vector<std::string>{"cat", "dog"}));
  EXPECT_NE(error_of([&] {
              read_csv_file(dir / "t.csv", "kind", 1, {"", {"x", "z"}});
            }).find("t.csv: has no column 'z', a feature column of the training table"),
            std::string::npos);
  EXPECT_NE(error_of([&] {
              read_csv_file(dir / "t.csv", "species", 1, {"", {"x"}});
            }).find("t.csv: the label column 'species' is not in the first line (--label-column"),
            std::string::npos);
  // A label column is no feature, even by name.
  EXPECT_NE(error_of([&] {
              read_csv_file(dir / "t.csv", "kind", 1, {"", {"kind"}});
            }).find("no column 'kind'"),
            std::string::npos);
  // Without a header the table is read as it is (numbers that happen to be names make a header).
  write_text(dir / "bare.csv", "0,1,2\n1,3,4\n");
  EXPECT_EQ(read_csv_file(dir / "bare.csv", "", 1, {"", {"x", "y"}}).features.count, 2U);
  EXPECT_EQ(read_csv_file(dir / "bare.csv", "", 1, {"", {"2", "1"}}).features.value(0, 0), 4.0F);

  // Training and test tables: the test table's columns in the training table's order.
  write_text(dir / "train.csv", "kind,x,y\ncat,1,2\ndog,3,4\ncat,5,6\n");
  write_text(dir / "test.csv", "y,kind,x\n20,dog,10\n");
  DataSource s;
  s.train_csv = dir / "train.csv";
  s.test_csv = dir / "test.csv";
  const LoadedData loaded = load_data(s);
  EXPECT_EQ(loaded.data.train.feature_names, (std::vector<std::string>{"x", "y"}));
  EXPECT_EQ(loaded.data.test.value(0, 0), 10.0F);
  EXPECT_EQ(loaded.data.test.value(0, 1), 20.0F);
  EXPECT_EQ(loaded.data.test.labels, (std::vector<Label>{1}));
  write_text(dir / "test.csv", "kind,x,z\ndog,10,20\n");
  EXPECT_NE(error_of([&] { load_data(s); }).find("test.csv: has no column 'y'"), std::string::npos);

  // A model that records its columns: eval's new rows and predict's rows are taken by name.
  ModelFile model = ant_bee_cat_model();
  model.feature_names = {"x", "y"};
  model.label_name = "label";
  model.model.W << 1, 0, 0, 0, 0, 1;  // class 0 from x, class 2 from y
  write_text(dir / "new.csv", "y,label,x\n9,ant,1\n");
  DataSource rows;
  rows.test_csv = dir / "new.csv";  // its label column found by the model's name for it
  const SplitData split = load_split_for_model(model, rows, "test");
  EXPECT_EQ(split.data.value(0, 0), 1.0F);
  EXPECT_EQ(split.data.value(0, 1), 9.0F);
  write_text(dir / "ids.csv", "id,y,x\nfirst,9,1\n");
  const std::vector<Prediction> by_name = predict_feature_file(model, dir / "ids.csv", "");
  ASSERT_EQ(by_name.size(), 1U);
  EXPECT_EQ(by_name[0].top(1), std::vector<int>{2});  // y = 9 wins
  // A header with some of the model's columns names the one it lacks, not the label column.
  write_text(dir / "no_x.csv", "id,y\nfirst,9\n");
  EXPECT_NE(error_of([&] {
              predict_feature_file(model, dir / "no_x.csv", "");
            }).find("no_x.csv: has no column 'x', a feature column of the training table"),
            std::string::npos);
  // Training data whose columns are not the model's.
  write_text(dir / "swapped.csv", "kind,y,x\nant,1,2\nbee,3,4\ncat,5,6\nant,1,2\nbee,3,4\ncat,5,6\n");
  DataSource other;
  other.train_csv = dir / "swapped.csv";
  other.test_fraction = 0.5;
  EXPECT_NE(error_of([&] {
              load_split_for_model(model, other, "train");
            }).find("feature column 1 is 'y', but the model's is 'x'"),
            std::string::npos);
}

}  // namespace
}  // namespace softreg
