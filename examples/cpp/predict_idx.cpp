// Loads a model written by `softreg train` (or SoftmaxRegression.save) and an IDX test set, prints the
// model's test accuracy and its top class for the first few images.
//
//   predict_idx runs/latest/model.safetensors /usr/share/datasets/fashion-mnist
#include <cstdio>
#include <exception>

#include <softreg/dataset.hpp>
#include <softreg/inference.hpp>
#include <softreg/model_io.hpp>
#include <softreg/parallel.hpp>

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s MODEL.safetensors IDX_FOLDER\n", argv[0]);
    return 2;
  }
  try {
    const softreg::ModelFile model = softreg::load_model(argv[1]);
    const softreg::DataFiles files = softreg::locate_data(argv[2]);
    const softreg::Dataset test =
        softreg::load_dataset(files.test_images, files.test_labels, model.model.classes());
    softreg::ThreadPool pool(softreg::hardware_threads());
    const softreg::ModelEvaluation result = softreg::evaluate_model(model.model, test, pool);
    std::printf("accuracy %.4f on %zu test images\n", result.evaluation.accuracy, test.count);
    for (const softreg::Prediction& p : softreg::predict_rows(model.model, test, 0, 4)) {
      const int best = p.top(1)[0];
      std::printf("%s: %s (%.3f), true %s\n", p.input.c_str(), model.class_names[best].c_str(),
                  p.probabilities[best], model.class_names[*p.label].c_str());
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "predict_idx: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
