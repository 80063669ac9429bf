// User images: area-averaging resize on hand-checked cases, and decoding files written by stb.
#include <gtest/gtest.h>

#include <stb_image_write.h>
#include <webp/encode.h>

#include "softreg/error.hpp"
#include "softreg/idx.hpp"  // read_file_bytes
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
  // An empty IDAT chunk after the image data (PNG allows any number): still read, and the same.
  // (An empty first IDAT chunk is refused: FuzzFindings.ChunksAndEntriesClaimingMoreThanTheFileAreErrors.)
  std::vector<std::uint8_t> bytes = read_file_bytes(dir / "a.png");
  ASSERT_GT(bytes.size(), 12u);
  const std::vector<std::uint8_t> empty_idat = {0, 0, 0, 0, 'I', 'D', 'A', 'T', 0x35, 0xaf, 0x06, 0x1e};
  bytes.insert(bytes.end() - 12, empty_idat.begin(), empty_idat.end());  // before IEND
  test::write_bytes(dir / "empty-idat.png", bytes);
  EXPECT_EQ(read_gray_image(dir / "empty-idat.png").pixels, png.pixels);
  GrayImage inverted = png;
  invert(inverted);
  EXPECT_EQ(inverted.pixels[5], 0);
}

TEST(Image, CompositesTransparencyOntoTheBackground) {
  test::TempDir dir;
  // RGBA: a white pixel fully transparent, one half transparent, one opaque; grey + alpha the same.
  const std::vector<std::uint8_t> rgba = {255, 255, 255, 0, 255, 255, 255, 128, 255, 255, 255, 255};
  ASSERT_TRUE(stbi_write_png((dir / "rgba.png").c_str(), 3, 1, 4, rgba.data(), 3 * 4));
  const std::vector<std::uint8_t> grey_alpha = {200, 0, 200, 128, 200, 255};
  ASSERT_TRUE(stbi_write_png((dir / "ga.png").c_str(), 3, 1, 2, grey_alpha.data(), 3 * 2));
  // Onto black (Fashion-MNIST's background), the default: transparent is 0, half is half the grey.
  EXPECT_EQ(read_gray_image(dir / "rgba.png").pixels, (std::vector<std::uint8_t>{0, 128, 255}));
  EXPECT_EQ(read_gray_image(dir / "ga.png").pixels, (std::vector<std::uint8_t>{0, 100, 200}));
  // Onto white, for an image that will be inverted.
  const DecodeOptions white{.background = 255};
  EXPECT_EQ(read_gray_image(dir / "rgba.png", white).pixels, (std::vector<std::uint8_t>{255, 255, 255}));
  EXPECT_EQ(read_gray_image(dir / "ga.png", white).pixels, (std::vector<std::uint8_t>{255, 227, 200}));
}

TEST(Image, ReadsWebPAsTheSamePngWouldBeRead) {
  test::TempDir dir;
  // A 5x3 RGBA picture with colours and transparency, lossless: the same pixels as its PNG.
  std::vector<std::uint8_t> rgba;
  for (int i = 0; i < 15; ++i) {
    const auto v = static_cast<std::uint8_t>(17 * i);
    rgba.insert(rgba.end(), {v, static_cast<std::uint8_t>(255 - v), static_cast<std::uint8_t>(v / 2),
                             static_cast<std::uint8_t>(i % 3 == 0 ? 255 : 40 * i % 256)});
  }
  ASSERT_TRUE(stbi_write_png((dir / "p.png").c_str(), 5, 3, 4, rgba.data(), 5 * 4));
  std::uint8_t* encoded = nullptr;
  const std::size_t size = WebPEncodeLosslessRGBA(rgba.data(), 5, 3, 5 * 4, &encoded);
  ASSERT_GT(size, 0U);
  test::write_bytes(dir / "p.webp", std::vector<std::uint8_t>(encoded, encoded + size));
  WebPFree(encoded);
  const GrayImage png = read_gray_image(dir / "p.png"), webp = read_gray_image(dir / "p.webp");
  EXPECT_EQ(webp.width, 5);
  EXPECT_EQ(webp.height, 3);
  EXPECT_EQ(webp.pixels, png.pixels);
  const DecodeOptions white{.background = 255};
  EXPECT_EQ(read_gray_image(dir / "p.webp", white).pixels, read_gray_image(dir / "p.png", white).pixels);
  EXPECT_EQ(image_dimensions(dir / "p.webp"), (std::pair{5, 3}));
  // Cut short, it is an error naming the file, never a crash.
  std::vector<std::uint8_t> bytes = read_file_bytes(dir / "p.webp");
  for (std::size_t keep : {std::size_t{12}, std::size_t{20}, bytes.size() - 4}) {
    test::write_bytes(dir / "cut.webp", std::vector<std::uint8_t>(bytes.begin(), bytes.begin() + keep));
    test::expect_error([&] { read_gray_image(dir / "cut.webp"); }, "cut.webp: cannot");
  }
}

// A JPEG with an EXIF segment (APP1) right after its start, holding one orientation tag, in either byte
// order: what a phone writes for a photo taken on its side.
std::vector<std::uint8_t> with_exif_orientation(const std::vector<std::uint8_t>& jpeg, int orientation,
                                                bool big_endian) {
  const auto u16 = [&](std::vector<std::uint8_t>& out, unsigned v) {
    const std::uint8_t hi = static_cast<std::uint8_t>(v >> 8), lo = static_cast<std::uint8_t>(v);
    out.insert(out.end(), big_endian ? std::initializer_list<std::uint8_t>{hi, lo}
                                     : std::initializer_list<std::uint8_t>{lo, hi});
  };
  const auto u32 = [&](std::vector<std::uint8_t>& out, unsigned v) {
    if (big_endian) {
      u16(out, v >> 16);
      u16(out, v & 0xFFFF);
    } else {
      u16(out, v & 0xFFFF);
      u16(out, v >> 16);
    }
  };
  std::vector<std::uint8_t> tiff = {'E', 'x', 'i', 'f', 0, 0};
  tiff.insert(tiff.end(), big_endian ? std::initializer_list<std::uint8_t>{'M', 'M'}
                                     : std::initializer_list<std::uint8_t>{'I', 'I'});
  u16(tiff, 42);
  u32(tiff, 8);       // IFD0 right after the header
  u16(tiff, 1);       // one entry:
  u16(tiff, 0x0112);  // Orientation,
  u16(tiff, 3);       // SHORT,
  u32(tiff, 1);       // one of it,
  u16(tiff, static_cast<unsigned>(orientation));
  u16(tiff, 0);
  u32(tiff, 0);                                                   // no next IFD
  std::vector<std::uint8_t> out(jpeg.begin(), jpeg.begin() + 2);  // SOI
  const auto length = static_cast<unsigned>(tiff.size() + 2);
  out.insert(out.end(),
             {0xFF, 0xE1, static_cast<std::uint8_t>(length >> 8), static_cast<std::uint8_t>(length)});
  out.insert(out.end(), tiff.begin(), tiff.end());
  out.insert(out.end(), jpeg.begin() + 2, jpeg.end());
  return out;
}

// A photo is read as it is meant to be seen: turned and mirrored as its EXIF orientation says, its
// size as seen (what image folders resize from) likewise.
TEST(Image, PhotosAreTurnedAsTheirExifOrientationSays) {
  test::TempDir dir;
  // 32 x 16 pixels in four flat quadrants, 16 x 8 each (whole JPEG blocks: they decode nearly exact).
  const std::uint8_t top_left = 0, top_right = 80, bottom_left = 160, bottom_right = 240;
  std::vector<std::uint8_t> grey(32 * 16);
  for (int y = 0; y < 16; ++y) {
    for (int x = 0; x < 32; ++x)
      grey[static_cast<std::size_t>(y * 32 + x)] =
          y < 8 ? (x < 16 ? top_left : top_right) : (x < 16 ? bottom_left : bottom_right);
  }
  ASSERT_TRUE(stbi_write_jpg((dir / "plain.jpg").c_str(), 32, 16, 1, grey.data(), 100));
  const std::vector<std::uint8_t> jpeg = read_file_bytes(dir / "plain.jpg");
  // The quadrants' values as seen (top left, top right, bottom left, bottom right) for each orientation.
  const std::uint8_t expected[9][4] = {
      {},
      {top_left, top_right, bottom_left, bottom_right},  // 1: upright
      {top_right, top_left, bottom_right, bottom_left},  // 2: mirrored
      {bottom_right, bottom_left, top_right, top_left},  // 3: upside down
      {bottom_left, bottom_right, top_left, top_right},  // 4: mirrored top to bottom
      {top_left, bottom_left, top_right, bottom_right},  // 5: transposed
      {bottom_left, top_left, bottom_right, top_right},  // 6: turned a quarter clockwise to be seen
      {bottom_right, top_right, bottom_left, top_left},  // 7: transversed
      {top_right, bottom_right, top_left, bottom_left},  // 8: turned a quarter counter-clockwise
  };
  for (int orientation = 1; orientation <= 8; ++orientation) {
    for (const bool big_endian : {false, true}) {
      const auto file = dir / "photo.jpg";
      test::write_bytes(file, with_exif_orientation(jpeg, orientation, big_endian));
      const GrayImage image = read_gray_image(file);
      const bool turned = orientation >= 5;
      ASSERT_EQ(image.width, turned ? 16 : 32) << orientation;
      ASSERT_EQ(image.height, turned ? 32 : 16) << orientation;
      EXPECT_EQ(image_dimensions(file), (turned ? std::pair{16, 32} : std::pair{32, 16})) << orientation;
      const int w = image.width, h = image.height;
      const std::pair<int, int> centres[4] = {
          {w / 4, h / 4}, {3 * w / 4, h / 4}, {w / 4, 3 * h / 4}, {3 * w / 4, 3 * h / 4}};
      for (int q = 0; q < 4; ++q) {
        const int value = image.pixels[static_cast<std::size_t>(centres[q].second * w + centres[q].first)];
        EXPECT_NEAR(value, expected[orientation][q], 4)
            << "orientation " << orientation << ", quadrant " << q << (big_endian ? ", big-endian" : "");
      }
    }
  }
  // Without EXIF, or with an orientation out of range, the pixels are read as stored.
  EXPECT_EQ(read_gray_image(dir / "plain.jpg").width, 32);
  test::write_bytes(dir / "odd.jpg", with_exif_orientation(jpeg, 9, false));
  EXPECT_EQ(read_gray_image(dir / "odd.jpg").pixels, read_gray_image(dir / "plain.jpg").pixels);
}

TEST(Image, FormatsItDoesNotReadAreNamed) {
  test::TempDir dir;
  const auto named = [&](const std::string& bytes, const std::string& format) {
    test::write_bytes(dir / "photo", std::vector<std::uint8_t>(bytes.begin(), bytes.end()));
    test::expect_error([&] { read_gray_image(dir / "photo"); }, "photo: is a " + format + " image");
  };
  named(std::string("II*\0\x08\0\0\0", 8) + std::string(32, '\0'), "TIFF");
  named(std::string("MM\0*\0\0\0\x08", 8) + std::string(32, '\0'), "TIFF");
  named(std::string("\0\0\0\x18"
                    "ftypheic\0\0\0\0mif1heic",
                    24),
        "HEIF (HEIC)");
  named(std::string("\0\0\0\x1C"
                    "ftypavif\0\0\0\0avifmif1miaf",
                    28),
        "AVIF");
  named(std::string("\xFF\x0A\xFA\x7F", 4) + std::string(32, '\0'), "JPEG XL");
}

TEST(Image, RefusesSidesOverTheGivenLimit) {
  test::TempDir dir;
  const std::vector<std::uint8_t> row(40, 9);
  ASSERT_TRUE(stbi_write_png((dir / "wide.png").c_str(), 40, 1, 1, row.data(), 40));
  EXPECT_EQ(read_gray_image(dir / "wide.png", {.max_side = 40}).width, 40);
  test::expect_error([&] { read_gray_image(dir / "wide.png", {.max_side = 39}); },
                     "image is 40x1; each side may be at most 39");
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

namespace softreg {
namespace {

std::vector<std::uint8_t> bytes_of(const std::string& text) {
  return std::vector<std::uint8_t>(text.begin(), text.end());
}

TEST(Image, AHeaderClaimingMoreThanTheFileHoldsIsRefusedBeforeDecoding) {
  test::TempDir dir;
  // The fuzzer's finding: 21 bytes claiming 8 x 6,506,266 pixels (it cost 8 s and 1.58 GB, then a
  // prediction for an image that is not there).
  test::write_bytes(dir / "finding.pgm", bytes_of(std::string("P5\n 8\n6506266p000\n\n\n9")));
  test::expect_error([&] { read_gray_image(dir / "finding.pgm"); },
                     "finding.pgm: the header claims 8x6506266 pixels, more than a 21-byte file can hold");

  // Binary PGM and PPM: the samples must all be there.
  std::vector<std::uint8_t> pgm = bytes_of("P5\n# a comment\n10 10\n255\n");
  pgm.resize(pgm.size() + 100, 7);
  test::write_bytes(dir / "ok.pgm", pgm);
  EXPECT_EQ(read_gray_image(dir / "ok.pgm").pixels, std::vector<std::uint8_t>(100, 7));
  pgm.pop_back();
  test::write_bytes(dir / "short.pgm", pgm);
  test::expect_error(
      [&] { read_gray_image(dir / "short.pgm"); },
      "short.pgm: truncated: the header says 10x10 pixels (100 bytes of samples), the file has 99");
  std::vector<std::uint8_t> ppm = bytes_of("P6 4 2 255 ");
  ppm.resize(ppm.size() + 4 * 2 * 3 - 1, 9);
  test::write_bytes(dir / "short.ppm", ppm);
  test::expect_error([&] { read_gray_image(dir / "short.ppm"); },
                     "the header says 4x2 pixels (24 bytes of samples)");

  // PNGs of 100 bytes whose headers claim 30000 x 30000 (over the megapixel limit) and 9000 x 9000 pixels.
  const auto png_claiming = [](std::uint32_t side) {
    std::vector<std::uint8_t> png = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n',
                                     0,    0,   0,   13,  'I',  'H',  'D',  'R'};
    test::put_be32(png, side);
    test::put_be32(png, side);
    png.insert(png.end(), {8, 0, 0, 0, 0});  // 8-bit grey, deflate, no filter, no interlace
    png.resize(100, 0);
    return png;
  };
  test::write_bytes(dir / "huge.png", png_claiming(30000));
  test::expect_error([&] { read_gray_image(dir / "huge.png"); },
                     "huge.png: image is 30000x30000, larger than the 100-megapixel limit");
  test::write_bytes(dir / "big.png", png_claiming(9000));
  test::expect_error([&] { read_gray_image(dir / "big.png"); },
                     "big.png: the header claims 9000x9000 pixels, more than a 100-byte file can hold");

  // A real, well-compressed picture is not caught by the bound: 1,000 x 1,000 of one grey.
  const std::vector<std::uint8_t> flat(1000 * 1000, 128);
  ASSERT_TRUE(stbi_write_png((dir / "flat.png").c_str(), 1000, 1000, 1, flat.data(), 1000));
  const GrayImage big = read_gray_image(dir / "flat.png");
  EXPECT_EQ(big.width, 1000);
  EXPECT_EQ(big.pixels[123456], 128);
}

}  // namespace
}  // namespace softreg
