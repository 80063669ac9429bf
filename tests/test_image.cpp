// User images: area-averaging resize on hand-checked cases, and decoding files written by stb.
#include <gtest/gtest.h>

#include <stb_image_write.h>

#include "softreg/error.hpp"
#include "softreg/image.hpp"
#include "test_util.hpp"

namespace softreg {
namespace {

TEST(Image, AreaAverageOfWholeBlocks) {
  GrayImage img{4, 2, {0, 10, 20, 30, 40, 50, 60, 70}};
  const GrayImage out = resize_area(img, 2, 1);
  ASSERT_EQ(out.pixels.size(), 2u);
  EXPECT_EQ(out.pixels[0], 25);  // mean of 0, 10, 40, 50
  EXPECT_EQ(out.pixels[1], 45);  // mean of 20, 30, 60, 70
}

TEST(Image, AreaAverageWeighsPartialPixels) {
  // 3 -> 2: output 0 covers source 0 fully and half of source 1; output 1 the other half and source 2.
  GrayImage img{3, 1, {0, 90, 180}};
  const GrayImage out = resize_area(img, 2, 1);
  EXPECT_EQ(out.pixels[0], 30);   // (0 * 1 + 90 * 0.5) / 1.5
  EXPECT_EQ(out.pixels[1], 150);  // (90 * 0.5 + 180 * 1) / 1.5
  // Upscaling repeats pixels; same size is the identity.
  const GrayImage up = resize_area(GrayImage{2, 1, {7, 200}}, 4, 1);
  EXPECT_EQ(up.pixels, (std::vector<std::uint8_t>{7, 7, 200, 200}));
  EXPECT_EQ(resize_area(img, 3, 1).pixels, img.pixels);
}

TEST(Image, ReadsPngAndJpegAsGray) {
  test::TempDir dir;
  // A 6x4 RGB picture: left half pure red, right half white.
  std::vector<std::uint8_t> rgb;
  for (int y = 0; y < 4; ++y)
    for (int x = 0; x < 6; ++x) {
      const bool left = x < 3;
      rgb.insert(rgb.end(),
                 {255, static_cast<std::uint8_t>(left ? 0 : 255), static_cast<std::uint8_t>(left ? 0 : 255)});
    }
  ASSERT_TRUE(stbi_write_png((dir / "a.png").c_str(), 6, 4, 3, rgb.data(), 6 * 3));
  const GrayImage png = read_gray_image(dir / "a.png");
  EXPECT_EQ(png.width, 6);
  EXPECT_EQ(png.height, 4);
  EXPECT_EQ(png.pixels[5], 255);
  EXPECT_NEAR(png.pixels[0], 77, 2);  // stb's luminance weight of red is 77/256
  ASSERT_TRUE(stbi_write_jpg((dir / "a.jpg").c_str(), 6, 4, 3, rgb.data(), 95));
  const GrayImage jpg = read_gray_image(dir / "a.jpg");
  EXPECT_EQ(jpg.width, 6);
  EXPECT_NEAR(jpg.pixels[5], 255, 12);
  GrayImage inverted = png;
  invert(inverted);
  EXPECT_EQ(inverted.pixels[5], 0);
}

TEST(Image, RejectsWhatIsNotAnImage) {
  test::TempDir dir;
  test::write_bytes(dir / "notes.txt", {'h', 'e', 'l', 'l', 'o'});
  try {
    read_gray_image(dir / "notes.txt");
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("notes.txt: cannot read as an image"), std::string::npos)
        << e.what();
  }
  EXPECT_THROW(read_gray_image(dir / "missing.png"), Error);
  EXPECT_THROW(read_gray_image(dir.path()), Error);
}

}  // namespace
}  // namespace softreg
