// Decode only a region of a JPEG (plain C ABI, ctypes), with the libjpeg API of libjpeg-turbo:
// rows above the region are skipped (jpeg_skip_scanlines: entropy-decoded, no IDCT, upsampling or
// colour conversion), columns outside it are not reconstructed (jpeg_crop_scanline), and decoding
// stops after its last row. A RandomResizedCrop of a photograph needs on average half its pixels.
//
// The pixels equal a full decode's (ISLOW IDCT, fancy upsampling: Pillow's and simplejpeg's
// settings) except possibly on the region's outermost row/column, where the upsampler lacks its
// neighbour: callers decode a margin around what they use (tests compare with Pillow).
// Compiled against the vendored libjpeg v62 headers (libjpeg/), linked to the libjpeg that Pillow
// bundles or the system's.

#include <csetjmp>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <vector>

#include "libjpeg/jpeglib.h"

namespace {

struct ErrorManager {
  jpeg_error_mgr pub;
  jmp_buf jump;
  bool warned;
  char* message;
  int message_len;
};

void OnError(j_common_ptr cinfo) {
  auto* err = reinterpret_cast<ErrorManager*>(cinfo->err);
  if (err->message_len > 0) {
    char buffer[JMSG_LENGTH_MAX];
    (*cinfo->err->format_message)(cinfo, buffer);
    std::snprintf(err->message, err->message_len, "%s", buffer);
  }
  longjmp(err->jump, 1);
}

void OnMessage(j_common_ptr cinfo, int level) {
  if (level < 0) {  // a warning: corrupt data libjpeg recovered from
    auto* err = reinterpret_cast<ErrorManager*>(cinfo->err);
    if (!err->warned && err->message_len > 0) {
      char buffer[JMSG_LENGTH_MAX];
      (*cinfo->err->format_message)(cinfo, buffer);
      std::snprintf(err->message, err->message_len, "%s", buffer);
    }
    err->warned = true;
  }
}

}  // namespace

extern "C" {

// Decode the pixels [x0, x1) x [y0, y1) of the JPEG `data` scaled by 1/scale_denom (1, 2, 4, 8;
// the scaled image is ceil(width / scale_denom) x ceil(height / scale_denom)) as packed RGB into
// `out` (rows `out_stride` bytes apart). Returns 0 on success, 1 if libjpeg warned about corrupt
// data (the caller decides with another decoder), 2 on an error or a colour space other than
// YCbCr/grey/RGB, 3 for a region outside the scaled image; `message` receives libjpeg's words.
int convnext_jpeg_decode_region(const uint8_t* data, size_t size, int scale_denom, int x0, int y0, int x1, int y1,
                                uint8_t* out, int64_t out_stride, char* message, int message_len) {
  jpeg_decompress_struct cinfo;
  ErrorManager err;
  std::vector<uint8_t> line;
  cinfo.err = jpeg_std_error(&err.pub);
  err.pub.error_exit = OnError;
  err.pub.emit_message = OnMessage;
  err.warned = false;
  err.message = message;
  err.message_len = message_len;
  if (message_len > 0) message[0] = '\0';
  if (setjmp(err.jump)) {
    jpeg_destroy_decompress(&cinfo);
    return 2;
  }
  jpeg_create_decompress(&cinfo);
  jpeg_mem_src(&cinfo, data, (unsigned long)size);
  jpeg_read_header(&cinfo, TRUE);
  if (cinfo.jpeg_color_space != JCS_YCbCr && cinfo.jpeg_color_space != JCS_GRAYSCALE &&
      cinfo.jpeg_color_space != JCS_RGB) {
    jpeg_destroy_decompress(&cinfo);
    return 2;
  }
  cinfo.out_color_space = JCS_EXT_RGB;
  cinfo.scale_num = 1;
  cinfo.scale_denom = scale_denom;
  cinfo.dct_method = JDCT_ISLOW;
  cinfo.do_fancy_upsampling = TRUE;
  jpeg_start_decompress(&cinfo);
  if (x0 < 0 || y0 < 0 || x1 > (int)cinfo.output_width || y1 > (int)cinfo.output_height || x0 >= x1 || y0 >= y1) {
    jpeg_destroy_decompress(&cinfo);
    return 3;
  }
  JDIMENSION xoffset = x0, width = x1 - x0;
  if (x0 > 0 || x1 < (int)cinfo.output_width) jpeg_crop_scanline(&cinfo, &xoffset, &width);  // widens to iMCUs
  line.resize((size_t)width * 3);
  if (y0 > 0) jpeg_skip_scanlines(&cinfo, y0);
  const size_t skip = (size_t)(x0 - (int)xoffset) * 3, row_bytes = (size_t)(x1 - x0) * 3;
  for (int y = y0; y < y1; y++) {
    JSAMPROW row = line.data();
    if (jpeg_read_scanlines(&cinfo, &row, 1) != 1) {
      jpeg_destroy_decompress(&cinfo);
      return 2;
    }
    std::memcpy(out + (int64_t)(y - y0) * out_stride, line.data() + skip, row_bytes);
  }
  jpeg_abort_decompress(&cinfo);
  jpeg_destroy_decompress(&cinfo);
  return err.warned ? 1 : 0;
}

}  // extern "C"
