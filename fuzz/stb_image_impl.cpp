// stb_image's implementation compiled here, with the sanitizers and coverage of the fuzz build, in
// place of Debian's prebuilt libstb: the decoder itself is what most needs fuzzing.
#define STB_IMAGE_IMPLEMENTATION
#include <stb_image.h>
