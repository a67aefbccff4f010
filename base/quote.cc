#include "base/quote.h"

#include "absl/strings/str_cat.h"

namespace feedrank {

std::string QuoteForError(absl::string_view text, size_t max_bytes) {
  if (text.size() <= max_bytes) return absl::StrCat("'", text, "'");
  size_t cut = max_bytes;
  // Continuation bytes (10xxxxxx) belong to the character before them.
  while (cut > 0 && (static_cast<unsigned char>(text[cut]) & 0xC0) == 0x80) --cut;
  return absl::StrCat("'", text.substr(0, cut), "'... (", text.size(), " bytes)");
}

}  // namespace feedrank
