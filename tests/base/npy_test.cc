#include "base/npy.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "tests/test_util.h"

namespace feedrank {
namespace {

using ::feedrank::testing::ReadFile;
using ::feedrank::testing::TempDir;
using ::feedrank::testing::WriteFile;
using ::testing::HasSubstr;

// Builds a version-1.0 .npy file byte by byte, so that tests can produce
// headers WriteNpy never would.
std::string RawNpy(const std::string& dict, const std::string& data, int major = 1) {
  std::string header = dict;
  const size_t prelude = major == 1 ? 10 : 12;
  header.append((64 - (prelude + header.size() + 1) % 64) % 64, ' ');
  header.push_back('\n');
  std::string out("\x93NUMPY", 6);
  out.push_back(static_cast<char>(major));
  out.push_back(0);
  const size_t len = header.size();
  out.push_back(static_cast<char>(len & 0xff));
  out.push_back(static_cast<char>((len >> 8) & 0xff));
  if (major != 1) {
    out.push_back(static_cast<char>((len >> 16) & 0xff));
    out.push_back(static_cast<char>((len >> 24) & 0xff));
  }
  return out + header + data;
}

std::string Dict(const std::string& descr, const std::string& shape,
                 const std::string& fortran = "False") {
  return "{'descr': '" + descr + "', 'fortran_order': " + fortran +
         ", 'shape': " + shape + ", }";
}

template <typename T>
std::string Bytes(const std::vector<T>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T));
}

// Checks that `status` is InvalidArgument and that its message names `path`
// and contains `problem`.
void ExpectRefusal(const absl::Status& status, const std::string& path,
                   const std::string& problem) {
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  EXPECT_THAT(std::string(status.message()), HasSubstr(path));
  EXPECT_THAT(std::string(status.message()), HasSubstr(problem));
}

// Values that exercise the full range of T, including the extremes.
template <typename T>
std::vector<T> Values(size_t n) {
  std::mt19937_64 rng(n + 17);
  std::vector<T> v(n);
  for (size_t i = 0; i < n; ++i) {
    if constexpr (std::is_floating_point_v<T>) {
      v[i] = static_cast<T>(std::normal_distribution<double>(0, 1e3)(rng));
    } else {
      v[i] = static_cast<T>(rng());
    }
  }
  if (n >= 3) {
    v[0] = std::numeric_limits<T>::lowest();
    v[1] = std::numeric_limits<T>::max();
    v[2] = std::is_floating_point_v<T> ? std::numeric_limits<T>::denorm_min()
                                       : std::numeric_limits<T>::min();
  }
  return v;
}

template <typename T>
class NpyRoundTripTest : public ::testing::Test {};

using NpyTypes = ::testing::Types<float, double, int32_t, int64_t, uint64_t, uint8_t>;
TYPED_TEST_SUITE(NpyRoundTripTest, NpyTypes);

TYPED_TEST(NpyRoundTripTest, EveryShapeReadsBackExactly) {
  using T = TypeParam;
  TempDir dir;
  const std::vector<std::vector<int64_t>> shapes = {
      {1}, {7}, {1000}, {0}, {3, 4}, {1, 5}, {5, 1}, {0, 4}, {4, 0}, {129, 3}};
  for (const auto& shape : shapes) {
    int64_t count = 1;
    for (int64_t dim : shape) count *= dim;
    const std::vector<T> data = Values<T>(count);
    const std::string path = dir.Sub("a.npy");
    ASSERT_TRUE(WriteNpy<T>(path, data, shape).ok());

    auto read = ReadNpy<T>(path, static_cast<int>(shape.size()));
    ASSERT_TRUE(read.ok()) << read.status();
    EXPECT_EQ(read->shape, shape);
    EXPECT_EQ(read->rows(), shape[0]);
    EXPECT_EQ(read->cols(), shape.size() == 2 ? shape[1] : 1);
    // Bitwise, so that -0.0 and denormals count.
    ASSERT_EQ(read->data.size(), data.size());
    EXPECT_EQ(Bytes(read->data), Bytes(data));

    auto any_rank = ReadNpy<T>(path, -1);
    ASSERT_TRUE(any_rank.ok()) << any_rank.status();
    EXPECT_EQ(any_rank->shape, shape);
  }
}

TYPED_TEST(NpyRoundTripTest, DescrAndLittleEndianDataOnDisk) {
  using T = TypeParam;
  TempDir dir;
  const std::string path = dir.Sub("a.npy");
  const std::vector<T> data = Values<T>(6);
  ASSERT_TRUE(WriteNpy<T>(path, data, {2, 3}).ok());
  const std::string file = ReadFile(path);
  EXPECT_THAT(file, HasSubstr(std::string("'descr': '") + NpyDescr<T>() + "'"));
  EXPECT_THAT(file, HasSubstr("'shape': (2, 3)"));
  // The host is little-endian, so the payload is the in-memory bytes.
  ASSERT_GE(file.size(), data.size() * sizeof(T));
  EXPECT_EQ(file.substr(file.size() - data.size() * sizeof(T)), Bytes(data));
}

TEST(NpyTest, DescrStrings) {
  EXPECT_STREQ(NpyDescr<float>(), "<f4");
  EXPECT_STREQ(NpyDescr<double>(), "<f8");
  EXPECT_STREQ(NpyDescr<int32_t>(), "<i4");
  EXPECT_STREQ(NpyDescr<int64_t>(), "<i8");
  EXPECT_STREQ(NpyDescr<uint64_t>(), "<u8");
  EXPECT_STREQ(NpyDescr<uint8_t>(), "|u1");
}

TEST(NpyTest, ScalarRoundTrip) {
  TempDir dir;
  const std::string path = dir.Sub("s.npy");
  const std::vector<double> one = {2.5};
  ASSERT_TRUE(WriteNpy<double>(path, one, {}).ok());
  EXPECT_THAT(ReadFile(path), HasSubstr("'shape': ()"));
  auto read = ReadNpy<double>(path, 0);
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_TRUE(read->shape.empty());
  EXPECT_EQ(read->data, one);
}

TEST(NpyTest, HeaderIsPaddedSoDataStartsAtAMultipleOf64) {
  TempDir dir;
  const std::string path = dir.Sub("a.npy");
  // Shapes whose text lengths differ, so the padding differs.
  const std::vector<std::vector<int64_t>> shapes = {
      {0}, {1}, {12}, {123}, {1234567}, {3, 4}, {10, 1000}, {0, 0}, {1, 2, 3, 4, 5}};
  for (const auto& shape : shapes) {
    int64_t count = 1;
    for (int64_t dim : shape) count *= dim;
    ASSERT_TRUE(WriteNpy<uint8_t>(path, std::vector<uint8_t>(count, 7), shape).ok());
    const std::string file = ReadFile(path);
    ASSERT_GE(file.size(), 10u);
    EXPECT_EQ(file.substr(0, 6), std::string("\x93NUMPY", 6));
    EXPECT_EQ(file[6], 1);  // version 1.0
    EXPECT_EQ(file[7], 0);
    const size_t header_len =
        static_cast<unsigned char>(file[8]) | static_cast<unsigned char>(file[9]) << 8;
    const size_t data_offset = 10 + header_len;
    EXPECT_EQ(data_offset % 64, 0u) << "shape size " << shape.size();
    ASSERT_EQ(file.size(), data_offset + count);
    EXPECT_EQ(file[data_offset - 1], '\n');
    EXPECT_EQ(file[10], '{');
  }
}

TEST(NpyTest, WriteReplacesAnExistingFile) {
  TempDir dir;
  const std::string path = dir.Sub("a.npy");
  ASSERT_TRUE(WriteNpy<int32_t>(path, std::vector<int32_t>(100, 1), {100}).ok());
  ASSERT_TRUE(WriteNpy<int32_t>(path, std::vector<int32_t>{4, 5}, {2}).ok());
  auto read = ReadNpy<int32_t>(path, 1);
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(read->data, (std::vector<int32_t>{4, 5}));
}

TEST(NpyTest, WriteRefusesShapeThatDoesNotMatchData) {
  TempDir dir;
  const std::string path = dir.Sub("a.npy");
  absl::Status status = WriteNpy<float>(path, std::vector<float>(5), {2, 3});
  ExpectRefusal(status, path, "does not match 5 elements");
}

TEST(NpyTest, ReadsVersion2And3Headers) {
  TempDir dir;
  const std::vector<float> data = {1, 2, 3, 4, 5, 6};
  for (int major : {2, 3}) {
    const std::string path = dir.Sub("v" + std::to_string(major) + ".npy");
    WriteFile(path, RawNpy(Dict("<f4", "(2, 3)"), Bytes(data), major));
    auto read = ReadNpy<float>(path, 2);
    ASSERT_TRUE(read.ok()) << read.status();
    EXPECT_EQ(read->shape, (std::vector<int64_t>{2, 3}));
    EXPECT_EQ(read->data, data);
  }
}

TEST(NpyTest, WrongRankIsRefused) {
  TempDir dir;
  const std::string path = dir.Sub("m.npy");
  ASSERT_TRUE(WriteNpy<float>(path, std::vector<float>(12), {3, 4}).ok());
  ExpectRefusal(ReadNpy<float>(path, 1).status(), path,
                "array has 2 dimensions (shape (3, 4)), expected 1");
  ExpectRefusal(ReadNpy<float>(path, 3).status(), path, "expected 3");
  ExpectRefusal(ReadNpy<float>(path, 0).status(), path, "expected 0");
  EXPECT_TRUE(ReadNpy<float>(path, 2).ok());
}

TEST(NpyTest, MissingFileIsNotFound) {
  TempDir dir;
  const std::string path = dir.Sub("absent.npy");
  auto read = ReadNpy<float>(path, 1);
  EXPECT_EQ(read.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(read.status().message()), HasSubstr(path));
}

// A valid float file of shape (2, 3), and where its data starts.
struct ValidFile {
  std::string bytes;
  size_t data_offset;
};

ValidFile MakeValidFloatFile(const TempDir& dir) {
  const std::string path = dir.Sub("valid.npy");
  EXPECT_TRUE(WriteNpy<float>(path, std::vector<float>{1, 2, 3, 4, 5, 6}, {2, 3}).ok());
  ValidFile f;
  f.bytes = ReadFile(path);
  f.data_offset = f.bytes.size() - 6 * sizeof(float);
  return f;
}

TEST(NpyTest, BadMagicIsRefused) {
  TempDir dir;
  ValidFile f = MakeValidFloatFile(dir);
  const std::string path = dir.Sub("bad.npy");
  f.bytes[1] = 'M';
  WriteFile(path, f.bytes);
  ExpectRefusal(ReadNpy<float>(path, 2).status(), path, "bad magic");

  WriteFile(path, "hello, this is a text file and not an array at all");
  ExpectRefusal(ReadNpy<float>(path, 2).status(), path, "bad magic");
}

TEST(NpyTest, FileShorterThanThePreludeIsRefused) {
  TempDir dir;
  const std::string path = dir.Sub("short.npy");
  for (size_t len : {0, 1, 6, 9}) {
    WriteFile(path, MakeValidFloatFile(dir).bytes.substr(0, len));
    ExpectRefusal(ReadNpy<float>(path, 2).status(), path, "too short");
  }
}

TEST(NpyTest, TruncatedHeaderIsRefused) {
  TempDir dir;
  ValidFile f = MakeValidFloatFile(dir);
  const std::string path = dir.Sub("bad.npy");
  // Cut inside the header dict.
  for (size_t len : {10, 11, 30, 63}) {
    WriteFile(path, f.bytes.substr(0, len));
    ExpectRefusal(ReadNpy<float>(path, 2).status(), path, "truncated npy header");
  }
  // A header length pointing past the end of the file.
  std::string longer = f.bytes;
  longer[8] = static_cast<char>(0xff);
  longer[9] = static_cast<char>(0x7f);
  WriteFile(path, longer);
  ExpectRefusal(ReadNpy<float>(path, 2).status(), path, "truncated npy header");
  // Version 2 needs two more length bytes than the file has.
  WriteFile(path, std::string("\x93NUMPY\x02\x00\x10\x00", 10));
  ExpectRefusal(ReadNpy<float>(path, 2).status(), path, "truncated npy header");
}

TEST(NpyTest, TruncatedDataIsRefused) {
  TempDir dir;
  ValidFile f = MakeValidFloatFile(dir);
  const std::string path = dir.Sub("bad.npy");
  for (size_t missing : {1, 4, 24}) {
    WriteFile(path, f.bytes.substr(0, f.bytes.size() - missing));
    ExpectRefusal(ReadNpy<float>(path, 2).status(), path,
                  "truncated: shape (2, 3) needs 24 bytes of data, file has " +
                      std::to_string(24 - missing));
  }
}

TEST(NpyTest, TrailingBytesAreRefused) {
  TempDir dir;
  ValidFile f = MakeValidFloatFile(dir);
  const std::string path = dir.Sub("bad.npy");
  WriteFile(path, f.bytes + "xyz");
  ExpectRefusal(ReadNpy<float>(path, 2).status(), path,
                "has 3 bytes after the data for shape (2, 3)");
}

TEST(NpyTest, BigEndianIsRefused) {
  TempDir dir;
  ValidFile f = MakeValidFloatFile(dir);
  const std::string path = dir.Sub("bad.npy");
  const size_t at = f.bytes.find("'<f4'");
  ASSERT_NE(at, std::string::npos);
  f.bytes[at + 1] = '>';
  WriteFile(path, f.bytes);
  ExpectRefusal(ReadNpy<float>(path, 2).status(), path, "big-endian dtype '>f4'");

  // Also when big-endian is combined with a type that would otherwise be
  // converted.
  WriteFile(path, RawNpy(Dict(">i8", "(1,)"), std::string(8, '\0')));
  ExpectRefusal(ReadNpy<uint64_t>(path, 1).status(), path, "big-endian");
}

TEST(NpyTest, WrongDtypeIsRefused) {
  TempDir dir;
  const std::string path = dir.Sub("bad.npy");
  ASSERT_TRUE(WriteNpy<int32_t>(path, std::vector<int32_t>{1, 2}, {2}).ok());
  ExpectRefusal(ReadNpy<float>(path, 1).status(), path, "dtype is '<i4', expected '<f4'");
  ExpectRefusal(ReadNpy<int64_t>(path, 1).status(), path,
                "dtype is '<i4', expected '<i8'");

  ASSERT_TRUE(WriteNpy<double>(path, std::vector<double>{1, 2}, {2}).ok());
  ExpectRefusal(ReadNpy<float>(path, 1).status(), path, "dtype is '<f8', expected '<f4'");

  ASSERT_TRUE(WriteNpy<float>(path, std::vector<float>{1, 2}, {2}).ok());
  ExpectRefusal(ReadNpy<uint8_t>(path, 1).status(), path,
                "dtype is '<f4', expected '|u1'");
  // int64 -> uint64 is the only signed-to-unsigned convenience.
  WriteFile(path, RawNpy(Dict("<i4", "(2,)"), std::string(8, '\0')));
  ExpectRefusal(ReadNpy<uint64_t>(path, 1).status(), path,
                "dtype is '<i4', expected '<u8': 64-bit integers are required; save the "
                "array with .astype(np.uint64)");
}

TEST(NpyTest, FortranOrderIsRefused) {
  TempDir dir;
  ValidFile f = MakeValidFloatFile(dir);
  const std::string path = dir.Sub("bad.npy");
  const size_t at = f.bytes.find("False");
  ASSERT_NE(at, std::string::npos);
  f.bytes.replace(at, 5, "True ");  // same length keeps the data offset
  WriteFile(path, f.bytes);
  ExpectRefusal(ReadNpy<float>(path, 2).status(), path, "Fortran-ordered");
}

template <typename T>
void ExpectNonFiniteRefused(T bad, const std::string& shown) {
  TempDir dir;
  const std::string path = dir.Sub("bad.npy");
  std::vector<T> data(12, T(1));
  data[7] = bad;
  ASSERT_TRUE(WriteNpy<T>(path, data, {3, 4}).ok());
  const absl::Status status = ReadNpy<T>(path, 2).status();
  ExpectRefusal(status, path, "NaN and Inf are not allowed");
  EXPECT_THAT(std::string(status.message()), HasSubstr("element 7 (row 1)"));
  EXPECT_THAT(std::string(status.message()), HasSubstr(shown));
}

TEST(NpyTest, NanAndInfAreRefusedInFloatArrays) {
  ExpectNonFiniteRefused<float>(std::numeric_limits<float>::quiet_NaN(), "nan");
  ExpectNonFiniteRefused<float>(std::numeric_limits<float>::infinity(), "inf");
  ExpectNonFiniteRefused<float>(-std::numeric_limits<float>::infinity(), "-inf");
  ExpectNonFiniteRefused<double>(std::numeric_limits<double>::quiet_NaN(), "nan");
  ExpectNonFiniteRefused<double>(-std::numeric_limits<double>::infinity(), "-inf");
}

TEST(NpyTest, NanInA1DArrayNamesItsRow) {
  TempDir dir;
  const std::string path = dir.Sub("bad.npy");
  std::vector<float> data(10, 0.f);
  data[9] = std::nanf("");
  ASSERT_TRUE(WriteNpy<float>(path, data, {10}).ok());
  ExpectRefusal(ReadNpy<float>(path, 1).status(), path, "element 9 (row 9)");
}

TEST(NpyTest, NegativeInt64IsRefusedAsUint64) {
  TempDir dir;
  const std::string path = dir.Sub("ids.npy");
  ASSERT_TRUE(WriteNpy<int64_t>(path, std::vector<int64_t>{5, 6, -1, 8}, {4}).ok());
  ExpectRefusal(ReadNpy<uint64_t>(path, 1).status(), path,
                "dtype '<i8': element 2 does not fit '<u8'");
}

TEST(NpyTest, NonNegativeInt64IsAcceptedAsUint64) {
  TempDir dir;
  const std::string path = dir.Sub("ids.npy");
  const std::vector<int64_t> data = {0, 1, std::numeric_limits<int64_t>::max(), 42};
  ASSERT_TRUE(WriteNpy<int64_t>(path, data, {4}).ok());
  auto read = ReadNpy<uint64_t>(path, 1);
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(read->data, (std::vector<uint64_t>{
                            0, 1, uint64_t{std::numeric_limits<int64_t>::max()}, 42}));
}

TEST(NpyTest, Uint64IsAcceptedAsInt64OnlyWhenItFits) {
  TempDir dir;
  const std::string path = dir.Sub("d.npy");
  ASSERT_TRUE(WriteNpy<uint64_t>(path, std::vector<uint64_t>{3, 4}, {2}).ok());
  auto read = ReadNpy<int64_t>(path, 1);
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(read->data, (std::vector<int64_t>{3, 4}));

  ASSERT_TRUE(
      WriteNpy<uint64_t>(path, std::vector<uint64_t>{3, uint64_t{1} << 63}, {2}).ok());
  ExpectRefusal(ReadNpy<int64_t>(path, 1).status(), path, "element 1 does not fit");
}

TEST(NpyTest, UnsupportedVersionIsRefused) {
  TempDir dir;
  const std::string path = dir.Sub("bad.npy");
  for (int major : {0, 4, 255}) {
    ValidFile f = MakeValidFloatFile(dir);
    f.bytes[6] = static_cast<char>(major);
    WriteFile(path, f.bytes);
    ExpectRefusal(ReadNpy<float>(path, 2).status(), path,
                  "unsupported npy format version " + std::to_string(major));
  }
}

TEST(NpyTest, MalformedHeaderDictIsRefused) {
  TempDir dir;
  const std::string path = dir.Sub("bad.npy");
  const std::string data(8, '\0');
  struct Case {
    std::string dict;
    std::string problem;
  };
  const Case cases[] = {
      {"{'fortran_order': False, 'shape': (2,), }", "no 'descr' entry"},
      {"{'descr': '<f4', 'shape': (2,), }", "no 'fortran_order' entry"},
      {"{'descr': '<f4', 'fortran_order': False, }", "no 'shape' entry"},
      {Dict("<f4", "(-2,)"), "bad npy shape (-2,)"},
      {Dict("<f4", "(2, x)"), "bad npy shape"},
      {Dict("<f4", "(2,"), "malformed npy shape"},
      {"{'descr': '<f4, 'fortran_order': False, 'shape': (2,) }", "dtype is"},
  };
  for (const Case& c : cases) {
    WriteFile(path, RawNpy(c.dict, data));
    const absl::Status status = ReadNpy<float>(path, 1).status();
    SCOPED_TRACE(c.dict);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
    EXPECT_THAT(std::string(status.message()), HasSubstr(path));
    EXPECT_THAT(std::string(status.message()), HasSubstr(c.problem));
  }
}

TEST(NpyTest, ShapeWhoseByteCountOverflowsIsRefused) {
  // Shape (2^62, 4) of '<f4' would wrap the element count to 0 and pass
  // the size checks; (2^62,) would wrap only the byte count.
  TempDir dir;
  const std::string path = dir.Sub("huge.npy");
  WriteFile(path, RawNpy(Dict("<f4", "(4611686018427387904, 4)"), ""));
  auto read = ReadNpy<float>(path, 2);
  EXPECT_EQ(read.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(read.status().message()), HasSubstr(path));

  WriteFile(path, RawNpy(Dict("<f4", "(4611686018427387904,)"), ""));
  EXPECT_EQ(ReadNpy<float>(path, 1).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace feedrank
