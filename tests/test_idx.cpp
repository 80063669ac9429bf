#include <gtest/gtest.h>
#include "softreg/idx.hpp"
TEST(Idx, Placeholder) { EXPECT_TRUE(softreg::is_gzip(std::vector<std::uint8_t>{0x1f, 0x8b})); }
