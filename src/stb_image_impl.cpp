// stb_image's implementation (Debian's libstb-dev header) compiled here, in every build, rather than
// taken from Debian's prebuilt libstb.so (which only the tests' stbi_write_* calls still use; the
// library compiles its own writer, src/plot/png.cpp):
// - every allocation stb_image makes is zeroed. Its JPEG decoder reads a Huffman table that a file
//   never defined: from memory left by earlier allocations, a crafted JPEG made it index 16 MB past a
//   256-byte table (fuzz_image found it; with every allocation filled with 0xff before use, the file
//   read past the table every time). Zeroed, such a table is an empty one and the file fails with "bad
//   huffman code".
// - in the sanitizer and fuzz builds (SOFTREG_SANITIZE) this file is instrumented with the rest, so the
//   sanitizers and the fuzzers see inside the decoder, where a hostile image does its harm.
#include <cstdlib>

#define STBI_MALLOC(size) std::calloc(1, size)
#define STBI_REALLOC(pointer, size) std::realloc(pointer, size)
#define STBI_FREE(pointer) std::free(pointer)
#define STB_IMAGE_IMPLEMENTATION
#include <stb_image.h>
