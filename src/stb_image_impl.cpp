// stb_image's implementation compiled here, with the sanitizers (and the fuzz build's coverage), in
// place of Debian's prebuilt libstb: the decoder is where a hostile image does its harm, and an
// uninstrumented libstb.so would hide it from the sanitizer test suite and the fuzzers alike.
// CMake adds this file to softreg_lib only in the sanitizer build (SOFTREG_SANITIZE, which SOFTREG_FUZZ
// implies).
#define STB_IMAGE_IMPLEMENTATION
#include <stb_image.h>
