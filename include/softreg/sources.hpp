// Where training data comes from besides IDX folders: NumPy arrays (.npy, .npz), CSV tables and
// folders of images sorted into class folders (torchvision's ImageFolder layout). Every loader returns
// the same Dataset the IDX reader does, so training, evaluation and the kernels do not care where the
// rows came from. Errors name the file and the row, element or image that is wrong.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "softreg/bytes.hpp"
#include "softreg/dataset.hpp"

namespace softreg {

// ---- NumPy ---------------------------------------------------------------------------------------

/// A NumPy array as stored in a .npy file: its dtype ("<f4", "|u1", "<U5", ...), C-order shape and
/// the raw elements (a view of the memory-mapped file when it was read from one).
struct NpyArray {
  std::string descr;
  char kind = 0;  // 'f' float, 'i' signed, 'u' unsigned, 'b' bool, 'U' unicode, 'S' bytes
  std::size_t item_size = 0;
  bool big_endian = false;  // '>' (numpy on a big-endian machine, or astype('>f4')): converted as read
  std::vector<std::size_t> shape;
  Bytes data;

  std::size_t elements() const;
};

/// Parses a .npy buffer (format versions 1 to 3): magic, header dictionary, dtype, shape and that the
/// body has exactly the bytes the header promises. Fortran order and object arrays are errors; big-endian
/// data is read in its byte order. `source` names the file in messages.
NpyArray parse_npy(const Bytes& bytes, const std::string& source);
/// Reads (memory-maps) and parses a .npy file.
NpyArray read_npy_file(const std::filesystem::path& path);
/// Every array in a .npz file (a zip of .npy files, stored or deflated), by name without ".npy".
std::map<std::string, NpyArray> read_npz_file(const std::filesystem::path& path);

/// Labels as read from a file before they become class indices: whole numbers, or strings (whose
/// classes are their sorted distinct values).
struct RawLabels {
  std::vector<std::int64_t> numbers;  // when !is_text
  std::vector<std::string> text;      // when is_text
  bool is_text = false;
  std::size_t size() const { return is_text ? text.size() : numbers.size(); }
};

/// A 2-D feature array as dataset rows: float32 used in place, float64 converted once, uint8 kept as
/// bytes (the model sees byte / 255, like pixels). Every float must be finite.
Dataset features_from_npy(const NpyArray& array, const std::string& source);
/// A 1-D array of whole numbers or strings as labels.
RawLabels labels_from_npy(const NpyArray& array, const std::string& source);

// ---- CSV -----------------------------------------------------------------------------------------

/// A training table's column names (its header), which the tables read for it are matched to; empty
/// where it had none.
struct CsvNames {
  std::string label;
  std::vector<std::string> features;
};
/// A CSV table split into feature rows (float32) and a label column. The first line is a header when
/// any of its feature cells is not a number. `label_column` is a column name (needs a header) or a
/// 0-based index; empty means the first column, or the column named `trained.label` where the header
/// has one. A table whose header has every one of `trained.features` gives those columns, in that
/// order, as its features (others, an id column say, are left unread), and one whose header lacks one
/// is an error naming it; a table without a header is read as it is. A first column the header leaves
/// unnamed is the row index pandas' `DataFrame.to_csv` (and R's `write.csv`) writes unless told not to:
/// it is left out, with a note, unless `label_column` names it by index. `ignored`: columns not read as
/// features (an id, a date), each a name or a 0-based index (negative from the end); the table needs a
/// header for them (its model then reads columns by name), and each must be a column other than the
/// labels.
struct CsvTable {
  Dataset features;  // labels not filled in; feature_names and label_name from the header, or empty
  RawLabels labels;
  std::vector<std::string> notes;  // one line each, for the user: a column left out and why
};
/// Up to `threads` threads parse a large table's rows, each a run of consecutive lines.
CsvTable read_csv_file(const std::filesystem::path& path, const std::string& label_column, int threads = 1,
                       const CsvNames& trained = {}, const std::vector<std::string>& ignored = {});
/// The same for CSV text in memory; `source` names it in messages.
CsvTable parse_csv(std::string_view text, const std::string& source, const std::string& label_column,
                   int threads = 1, const CsvNames& trained = {},
                   const std::vector<std::string>& ignored = {});
/// The cells of a CSV file's first non-blank line, quotes respected (a quoted comma is no separator).
std::vector<std::string> csv_first_cells(const std::filesystem::path& path);
/// A CSV table of feature columns only (for prediction); labels stay empty.
CsvTable read_csv_file_without_labels(const std::filesystem::path& path, const CsvNames& trained = {});

// ---- Labels --------------------------------------------------------------------------------------

/// Turns the raw labels of a train and a test set into class indices. Numbers must be whole and in
/// [0, classes) when `classes` is given, else classes = the largest label + 1; text labels become the
/// index of their value among the sorted distinct values of both sets, which are the class names.
/// Fills labels, num_classes and class_names (text labels only) of both sets.
void assign_labels(Dataset& train, const RawLabels& train_labels, const std::string& train_source,
                   Dataset& test, const RawLabels& test_labels, const std::string& test_source, int classes);

/// Labels of rows to evaluate a saved model on: text labels are the model's classes of those names,
/// numbers its classes of those numbers (0 to K-1, K = class_names.size()); anything else is an error
/// naming `source` and the index, and `whose` classes they are ("the model's", "the training set's").
/// Fills labels, num_classes and class_names.
void assign_model_labels(Dataset& rows, const RawLabels& labels, const std::string& source,
                         const std::vector<std::string>& class_names, std::string_view whose);
inline void assign_model_labels(Dataset& rows, const RawLabels& labels, const std::string& source,
                                const std::vector<std::string>& class_names) {
  assign_model_labels(rows, labels, source, class_names, "the model's");
}

// ---- Image folders -------------------------------------------------------------------------------

/// How to read an image folder: root/train/<class>/* and root/test/<class>/* (or only root/train, or
/// class folders directly in root, with test_fraction).
struct ImageFolderOptions {
  int height = 0;  // the size every image is resized to; 0: the first image's size, or 28x28 when
  int width = 0;   // the images' sizes differ
  bool skip_bad_images = false;  // go on past unreadable images (counted) instead of failing
  int threads = 1;               // decode in parallel
  bool use_cache = true;         // keep the decoded set beside the other decoded caches
};
/// True when `folder` looks like an image folder: a train/ folder of class folders, or class folders
/// holding images directly.
bool is_image_folder(const std::filesystem::path& folder);

struct ImageFolderData {
  Dataset train;
  std::optional<Dataset> test;        // when there is a test folder (image_test_folder)
  std::filesystem::path test_folder;  // which, or empty
  std::optional<Dataset> validation;  // when there is a validation folder (image_validation_folder)
  std::filesystem::path validation_folder;
  std::size_t skipped = 0;  // unreadable images passed over (skip_bad_images)
};
/// Whether the file's extension (in any case) is an image format's (.png, .jpg, ..., some softreg cannot
/// decode).
bool is_image_file(const std::filesystem::path& path);
/// Whether the file's extension (in any case) is that of feature rows: .npy, .npz, .csv or .tsv (or a
/// compressed table's, .csv.gz).
bool is_feature_file(const std::filesystem::path& path);
/// The image files under a folder at any depth, as torchvision's ImageFolder finds a class's (class/2019/
/// x.jpg too), sorted by path. Hidden files and folders (.DS_Store, .ipynb_checkpoints) are left out,
/// and links to folders are not followed, so a link cycle cannot make the listing endless.
std::vector<std::filesystem::path> image_files_under(const std::filesystem::path& folder);
/// An image folder's test split: `root`/test, else `root`/val, valid or validation (ImageNet's and
/// Kaggle's layouts), the first that holds class folders (a test/ of unlabelled images is not one);
/// empty when none does.
std::filesystem::path image_test_folder(const std::filesystem::path& root);
/// Its validation split, beside a test/ that holds class folders: `root`/val, valid or validation, the
/// first that holds class folders; empty otherwise.
std::filesystem::path image_validation_folder(const std::filesystem::path& root);
ImageFolderData load_image_folder(const std::filesystem::path& folder, const ImageFolderOptions& options);

// ---- Everything together -------------------------------------------------------------------------

/// What to train or evaluate on, as the CLI's flags give it; recorded in model files so eval and
/// predict can find the same data again.
struct DataSource {
  std::optional<std::filesystem::path> data;  // --data: an IDX folder, an image folder or a .npz
  std::string dataset;  // --dataset: a data set by name (download.hpp), looked for where it is kept
  std::filesystem::path train_features, train_labels, test_features, test_labels;  // .npy
  std::filesystem::path val_features, val_labels;  // a validation set given beside them (.npy)
  std::filesystem::path train_csv, test_csv, val_csv;
  std::string label_column;
  std::vector<std::string> ignore_columns;  // --ignore-columns: a training table's columns left unread
  int classes = 0;                          // --classes: 0 = from the data
  double test_fraction = 0;  // a seeded stratified test split of the training data, when no test set
  std::uint64_t seed = 0;    // for that split
  int image_height = 0;      // --image-size (image folders)
  int image_width = 0;
  bool skip_bad_images = false;
  int threads = 1;

  bool uses_arrays() const {  // a labels file alone too: an error then, not a run on other data
    return !train_features.empty() || !test_features.empty() || !val_features.empty() ||
           !train_labels.empty() || !test_labels.empty() || !val_labels.empty();
  }
  bool uses_csv() const { return !train_csv.empty() || !test_csv.empty() || !val_csv.empty(); }
};

/// Whether a source names its data (--data, --dataset, arrays or tables), rather than only options for
/// data found elsewhere (the default search, or a model's recorded source).
bool names_data(const DataSource& source);
/// The options `from` sets (--classes, --test-fraction, --image-size, --skip-bad-images, --label-column,
/// threads) applied to `to`, whose data they are for; unset ones, and the split's seed, stay `to`'s.
void apply_options(const DataSource& from, DataSource& to);
/// An image folder without --image-size is read at a model's input size, height x width, rather than at
/// its images' own: a model trained with --image-size given its folder again, or a folder of images of
/// another size, is resized as predict resizes files. Other sources are left as they are.
void read_images_at_model_size(int height, int width, DataSource& source);
/// --image-size and --skip-bad-images are for image folders: a UsageError names the flag and the data's
/// kind otherwise, rather than the option doing nothing.
void check_image_options_apply(const DataSource& source);

/// The kind of input a source gives: "idx", "images", "npy", "npz" or "csv".
std::string source_kind(const DataSource& source);

/// The four IDX files of an "idx" source: in --data when given (for a named data set too), else the
/// named data set's folders (locate_dataset), else the default Fashion-MNIST search (locate_data).
DataFiles locate_idx_files(const DataSource& source);

struct LoadedData {
  TrainTestData data;
  std::string kind;                       // source_kind
  std::filesystem::path folder;           // the folder or file the data came from (for messages and records)
  std::filesystem::path test_file;        // the test rows' own file (--test-features, --test-csv), if any
  std::filesystem::path validation_file;  // the given validation set's file or folder, if any
  std::size_t skipped_images = 0;
  std::vector<std::string> notes;  // one line each, for the user: what was left out of the data and why
  // Fashion-MNIST as Debian and Zalando ship it, the seed's data: where the seed's acceptance checks
  // (train loss < 0.5, accuracies > 0.7) say whether its recipe worked. On other data they say nothing.
  bool seed_data = false;
};
/// Loads the train and test sets a source names, checks they agree (feature count, classes) and fills
/// class names: from classes.txt beside IDX files, folder names, text labels, Fashion-MNIST's names for
/// Fashion-MNIST, otherwise the class numbers.
LoadedData load_data(const DataSource& source);

/// Whether a source names a test part of feature rows and no training part (--test-features and
/// --test-labels, or --test-csv, alone): new rows to evaluate a saved model on.
bool names_test_part_only(const DataSource& source);
/// That test part (in `data.test`; `data.train` stays empty), labelled for a model whose classes are
/// `class_names` (assign_model_labels); a table's columns matched to the model's names (`trained`,
/// read_csv_file); `folder` is the features file.
LoadedData load_test_part(const DataSource& source, const std::vector<std::string>& class_names,
                          const CsvNames& trained = {});

/// The source as a JSON string for model metadata, and back.
std::string source_to_json(const DataSource& source);
DataSource source_from_json(const std::string& text, const std::string& where);

}  // namespace softreg
