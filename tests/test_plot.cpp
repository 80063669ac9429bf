// Pictures: the layout arithmetic, and the files themselves decoded back (size, non-trivial content,
// SVG that parses as XML).
#include <expat.h>
#include <gtest/gtest.h>
#include <stb_image.h>

#include <fstream>
#include <set>
#include <sstream>

#include "softreg/plot.hpp"
#include "test_util.hpp"

namespace softreg::plot {
namespace {

TEST(PlotGeometry, NiceTicksUseRoundSteps) {
  const Ticks t = nice_ticks(0.3, 0.9, 6);
  EXPECT_DOUBLE_EQ(t.step, 0.1);
  ASSERT_EQ(t.values.size(), 7u);
  EXPECT_NEAR(t.values.front(), 0.3, 1e-12);
  EXPECT_NEAR(t.values.back(), 0.9, 1e-12);
  const Ticks e = nice_ticks(1, 100, 10);
  EXPECT_DOUBLE_EQ(e.step, 10);
  EXPECT_DOUBLE_EQ(e.lo, 0);
  EXPECT_DOUBLE_EQ(e.hi, 100);
  const Ticks odd = nice_ticks(0.13, 2.71, 5);
  EXPECT_DOUBLE_EQ(odd.step, 0.5);
  EXPECT_LE(odd.lo, 0.13);
  EXPECT_GE(odd.hi, 2.71);
  const Ticks flat = nice_ticks(2, 2, 4);  // a degenerate range still gives an axis
  EXPECT_LT(flat.lo, 2);
  EXPECT_GT(flat.hi, 2);
}

TEST(PlotGeometry, CurvesRangeIsTheSeedsUnlessAValueFallsOutside) {
  EXPECT_EQ(curves_y_range({{0.79, 0.45}, {0.75, 0.85}}), std::make_pair(0.3, 0.9));
  const auto wide = curves_y_range({{2.31, 0.45}, {0.12, 0.95}, {std::nan("")}});
  EXPECT_NEAR(wide.first, 0.1, 1e-12);
  EXPECT_NEAR(wide.second, 2.4, 1e-12);
}

TEST(PlotGeometry, LegendAvoidsTheCurves) {
  PlotArea area;
  area.frame = {0, 0, 600, 400};
  area.x_lo = 1;
  area.x_hi = 10;
  area.y_lo = 0.3;
  area.y_hi = 0.9;
  // High flat curves fill the top: the legend goes to the bottom.
  const std::vector<std::vector<double>> high(2, std::vector<double>(10, 0.87));
  const Rect low = place_legend(area, 150, 60, high);
  EXPECT_GT(low.y, 200);
  // Low flat curves: the legend goes to the top right (the preferred spot).
  const std::vector<std::vector<double>> bottom(2, std::vector<double>(10, 0.33));
  const Rect top = place_legend(area, 150, 60, bottom);
  EXPECT_LT(top.y, 100);
  EXPECT_GT(top.x, 300);
  // Inside the frame in every case.
  for (const Rect& r : {low, top}) {
    EXPECT_GE(r.x, 0);
    EXPECT_LE(r.x + r.width, 600);
    EXPECT_GE(r.y, 0);
    EXPECT_LE(r.y + r.height, 400);
  }
}

TEST(PlotGeometry, GridCellsTileWithoutOverlap) {
  const GridLayout six = prediction_grid_layout(6, 28, 28);
  EXPECT_EQ(six.columns, 6);  // one row, like the seed
  EXPECT_EQ(six.rows, 1);
  EXPECT_EQ(six.image_scale, 4);
  EXPECT_DOUBLE_EQ(six.image_rect(0).width, 112);
  for (int n : {1, 6, 9, 50, 500, 10000}) {
    const GridLayout g = prediction_grid_layout(n, 28, 28);
    EXPECT_EQ(g.columns * g.rows >= n, true) << n;
    EXPECT_LT(g.columns * (g.rows - 1), n) << n;  // no empty row
    EXPECT_LE(g.width, 30000) << n;
    EXPECT_LE(g.height, 30000) << n;
    const Rect last = g.image_rect(n - 1);
    EXPECT_LE(last.x + last.width, g.width) << n;
    EXPECT_LE(last.y + last.height, g.height - g.footer_height) << n;
    if (n > 1) {
      const Rect a = g.image_rect(0), b = g.image_rect(1), t = g.title_rect(1);
      EXPECT_LE(a.x + a.width, b.x) << n;
      EXPECT_LE(t.y + g.title_height, b.y + 1e-9) << n;      // title above its image
      EXPECT_GE(g.cell_width, 0.6 * g.font_size * 10) << n;  // room for "ankle boot"
    }
  }
}

// Decodes a PNG and returns (width, height, number of distinct gray levels).
std::tuple<int, int, std::size_t> decode(const std::filesystem::path& path) {
  int w = 0, h = 0, channels = 0;
  unsigned char* data = stbi_load(path.c_str(), &w, &h, &channels, 1);
  if (!data) return {0, 0, 0};
  std::set<unsigned char> levels(data, data + static_cast<std::size_t>(w) * static_cast<std::size_t>(h));
  stbi_image_free(data);
  return {w, h, levels.size()};
}

bool parses_as_xml(const std::string& text) {
  XML_Parser parser = XML_ParserCreate(nullptr);
  const bool ok =
      XML_Parse(parser, text.data(), static_cast<int>(text.size()), /*isFinal=*/1) == XML_STATUS_OK;
  XML_ParserFree(parser);
  return ok;
}

TEST(PlotFiles, CurvesArePngAndValidSvg) {
  test::TempDir dir;
  const std::vector<Series> series = {{"train loss", {0.79, 0.57, 0.52}},
                                      {"train acc", {0.75, 0.81, 0.83}},
                                      {"test acc", {0.79, 0.80, std::nan("")}}};
  draw_training_curves(series, 10, dir / "c.png", dir / "c.svg");
  const auto [w, h, levels] = decode(dir / "c.png");
  EXPECT_EQ(w, 720);
  EXPECT_EQ(h, 440);
  EXPECT_GT(levels, 10u);  // text, grid, three colours, anti-aliasing
  std::ifstream in(dir / "c.svg");
  std::stringstream svg;
  svg << in.rdbuf();
  EXPECT_TRUE(parses_as_xml(svg.str()));
  EXPECT_NE(svg.str().find("<svg"), std::string::npos);
  EXPECT_FALSE(parses_as_xml(svg.str().substr(0, svg.str().size() / 2)));  // the check can fail
  EXPECT_TRUE(std::filesystem::is_empty(dir.path()) == false);
  for (const auto& entry : std::filesystem::directory_iterator(dir.path())) {
    EXPECT_EQ(entry.path().filename().string().find(".tmp"), std::string::npos);  // no temp files left
  }
}

// The PNG writer (stb_image_write with libdeflate, from cairo's 32-bit pixels): every value back exactly,
// and red, green and blue in their places.
TEST(PlotFiles, PngFilesHoldTheExactPixelsInTheirChannels) {
  std::vector<std::uint8_t> gray(13 * 7);
  for (std::size_t i = 0; i < gray.size(); ++i)
    gray[i] = static_cast<std::uint8_t>(i * 37 % 256);
  const std::string png = gray_image_png(gray, 13, 7, /*scale=*/3);
  int w = 0, h = 0, channels = 0;
  unsigned char* data = stbi_load_from_memory(reinterpret_cast<const unsigned char*>(png.data()),
                                              static_cast<int>(png.size()), &w, &h, &channels, 0);
  ASSERT_NE(data, nullptr);
  ASSERT_EQ(w, 39);
  ASSERT_EQ(h, 21);
  ASSERT_EQ(channels, 3);  // 8-bit RGB
  int wrong = 0;
  for (int y = 0; y < h; ++y) {
    for (int x = 0; x < w; ++x) {
      const std::uint8_t want = gray[static_cast<std::size_t>(y / 3 * 13 + x / 3)];
      for (int c = 0; c < 3; ++c)
        wrong += data[(y * w + x) * 3 + c] != want;
    }
  }
  stbi_image_free(data);
  EXPECT_EQ(wrong, 0);
  // Past what the writer can count (3 bytes a pixel and one a row in an int), a clear error before
  // any memory is taken.
  test::expect_error([] { gray_image_png(std::vector<std::uint8_t>{7}, 1, 1, /*scale=*/30000); },
                     "image.png: a 30000x30000 picture is too large to write as a PNG");

  // The curves' first series is matplotlib's blue, (31, 119, 180); with red and blue swapped it would
  // be (180, 119, 31).
  test::TempDir dir;
  draw_training_curves({{"train loss", {0.79, 0.57, 0.52}}}, 3, dir / "c.png", {});
  data = stbi_load((dir / "c.png").c_str(), &w, &h, &channels, 3);
  ASSERT_NE(data, nullptr);
  std::size_t blue = 0, swapped = 0;
  for (int i = 0; i < w * h; ++i) {
    const unsigned char* p = data + 3 * i;
    blue += p[0] == 31 && p[1] == 119 && p[2] == 180;
    swapped += p[0] == 180 && p[1] == 119 && p[2] == 31;
  }
  stbi_image_free(data);
  EXPECT_GT(blue, 100u);
  EXPECT_EQ(swapped, 0u);
}

TEST(PlotFiles, PredictionGridConfusionAndWeights) {
  test::TempDir dir;
  const Dataset data = test::random_dataset(12, 28, 28, 10, 5);
  std::vector<std::string> names = {"t-shirt", "trouser", "pullover", "dress", "coat",
                                    "sandal",  "shirt",   "sneaker",  "bag",   "ankle boot"};
  std::vector<GridItem> items;
  for (std::size_t i = 0; i < 6; ++i)
    items.push_back({i, i % 2 ? data.labels[i] : (data.labels[i] + 1) % 10});
  draw_prediction_grid(data, items, names, dir / "p.png");
  const GridLayout g = prediction_grid_layout(6, 28, 28);
  const auto [pw, ph, plevels] = decode(dir / "p.png");
  EXPECT_EQ(pw, static_cast<int>(std::ceil(g.width)));
  EXPECT_EQ(ph, static_cast<int>(std::ceil(g.height)));
  EXPECT_GT(plevels, 100u);  // random pixels

  std::vector<std::vector<std::int64_t>> confusion(10, std::vector<std::int64_t>(10, 3));
  for (int k = 0; k < 10; ++k)
    confusion[static_cast<std::size_t>(k)][static_cast<std::size_t>(k)] = 900;
  draw_confusion_matrix(confusion, names, dir / "cm.png");
  const auto [cw, ch, clevels] = decode(dir / "cm.png");
  EXPECT_GT(cw, 520);  // 10 cells of 52 plus labels
  EXPECT_GT(ch, 520);
  EXPECT_GT(clevels, 5u);

  Rng rng(1);
  const SoftmaxModel model = SoftmaxModel::initialized(784, 10, 0.01, rng);
  draw_weight_templates(model, 28, 28, names, dir / "w.png");
  const auto [ww, wh, wlevels] = decode(dir / "w.png");
  EXPECT_GT(ww, 5 * 168);
  EXPECT_GT(wh, 2 * 168);
  EXPECT_GT(wlevels, 50u);

  const std::string csv = confusion_csv({{5, 1}, {0, 7}}, {"a,b", "c"});
  EXPECT_EQ(csv, "true\\predicted,\"a,b\",c\n\"a,b\",5,1\nc,0,7\n");
}

TEST(PlotTerminal, BrailleChartHasTheSeriesAndAxes) {
  const std::vector<Series> series = {{"train loss", {0.79, 0.57, 0.45}}, {"test acc", {0.79, 0.80, 0.83}}};
  const auto lines = braille_chart(series, 3, 20, 6, /*color=*/false);
  ASSERT_EQ(lines.size(), 9u);  // 6 chart rows, axis, x labels, legend
  EXPECT_EQ(lines[0].rfind(" 0.90 ┤", 0), 0u);
  EXPECT_EQ(lines[5].rfind(" 0.30 ┤", 0), 0u);
  EXPECT_NE(lines[8].find("━━ train loss"), std::string::npos);
  EXPECT_NE(lines[8].find("━━ test acc"), std::string::npos);
  // Both series start at 0.79: (0.9 - 0.79) / 0.6 * 23 dots = dot row 4, character row 1.
  EXPECT_NE(lines[1].find("\xe2\xa0"), std::string::npos) << lines[1];  // a braille glyph (U+28xx)
  const auto colored = braille_chart(series, 3, 20, 6, /*color=*/true);
  EXPECT_NE(colored[0].find("\x1b["), std::string::npos);
}

}  // namespace
}  // namespace softreg::plot
